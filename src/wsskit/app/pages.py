"""The files ``wsskit serve`` serves over plain HTTP, and the security headers they carry.

WSS protects the bytes on the wire, not the page: a page that turns chat
text into HTML runs whatever script a peer sends (XSS), and a page of
another site may make the user's browser act (CSRF, Cross-Site WebSocket
Hijacking). So every page, script and style sheet goes out with:

- ``Content-Security-Policy``: scripts, styles and connections from this
  origin only (``'self'`` covers ``wss://`` to the same host and port), no
  inline script or style, no plugins, no framing (``frame-ancestors 'none'``);
- ``X-Content-Type-Options: nosniff``: a file is what its type says;
- ``Strict-Transport-Security`` over https: the browser never asks over
  plain http again (except for ``localhost``: see :func:`security_headers`);
- ``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY`` (for
  browsers without ``frame-ancestors``).

The pages themselves render all user text with ``textContent``.
"""

from __future__ import annotations

import functools
import importlib.resources

from ..protocol.events import Reject, Request
from ..protocol.headers import Headers

__all__ = ["PAGES", "CONTENT_SECURITY_POLICY", "security_headers", "page"]

#: Files served over plain HTTP: path -> (file in wsskit/app/web, content type).
PAGES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/dashboard": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/wsskit.js": ("wsskit.js", "text/javascript; charset=utf-8"),
}

#: The policy of every page: nothing inline, nothing from elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        # CSP Level 3: 'self' matches ws:// and wss:// on this host and port.
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

# A year, as the HSTS preload rules ask. Browsers ignore HSTS from IP
# addresses (RFC 6797 §8.1), so the dev server on 127.0.0.1 pins nothing.
_HSTS = "max-age=31536000"


def _is_localhost(host: str | None) -> bool:
    # The Host header's name without its port: "localhost:8443" -> "localhost".
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def security_headers(*, tls: bool, host: str | None = None) -> list[tuple[str, str]]:
    """The security headers of a page served over https (``tls``) or http.

    HSTS goes out over https except to ``localhost`` (the request's ``host``):
    a browser pins a host name for every port, so one visit to the dev
    server would turn every other program's http://localhost into https for
    a year.
    """
    headers = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if tls and not _is_localhost(host):
        # RFC 6797 §7.2: HSTS over a secure transport only; over http it is ignored.
        headers.append(("Strict-Transport-Security", _HSTS))
    return headers


@functools.cache
def _web_file(name: str) -> bytes:
    return (importlib.resources.files("wsskit.app") / "web" / name).read_bytes()


def page(request: Request, *, tls: bool) -> Reject | None:
    """The answer to ``request`` when it asks for one of :data:`PAGES`, else None.

    GET only (405 for other methods); a WebSocket upgrade to a page
    path gets 400. Raises :class:`FileNotFoundError` when the package lacks
    the file (a broken install).
    """
    entry = PAGES.get(request.path)
    if entry is None:
        return None
    if request.is_upgrade:
        return _plain(400, "this path serves a page, not a WebSocket\n", request, tls=tls)
    if request.method != "GET":
        answer = _plain(405, "use GET\n", request, tls=tls)
        answer.headers["Allow"] = "GET"
        return answer
    name, content_type = entry
    body = _web_file(name)
    headers = Headers([("Content-Type", content_type), ("Cache-Control", "no-cache")])
    headers.update(Headers(security_headers(tls=tls, host=request.headers.get("Host"))))
    # A Reject is how the server answers plain HTTP; its Content-Length
    # follows the body.
    return Reject(200, headers, body)


def _plain(status: int, text: str, request: Request, *, tls: bool) -> Reject:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    headers.update(Headers(security_headers(tls=tls, host=request.headers.get("Host"))))
    return Reject(status, headers, text.encode("utf-8"))
