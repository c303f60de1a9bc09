"""The demo page, the dashboard page and their files: served from the package, with security headers."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve_process import ServeProcess, http_exchange
from wsskit.app.pages import CONTENT_SECURITY_POLICY, PAGES, security_headers


def fetch(server: ServeProcess, data: bytes, *, tls: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Send the raw request ``data`` (over TLS unless ``tls`` is False); return status, headers, body."""
    return http_exchange(server.port, data, server.ca_path() if tls else None)


def get(
    server: ServeProcess, path: str, *, tls: bool = True, extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """``GET path`` with ``Connection: close``."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n{extra}\r\n"
    return fetch(server, request.encode("latin-1"), tls=tls)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path_factory.mktemp("pages"))
    yield server
    assert server.stop() == 0


def _web(name: str) -> bytes:
    return (importlib.resources.files("wsskit.app") / "web" / name).read_bytes()


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_is_served_with_security_headers(served: ServeProcess, path: str) -> None:
    status, headers, body = get(served, path)
    name, content_type = PAGES[path]
    assert status == 200
    assert body == _web(name)
    assert headers["content-type"] == content_type
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


def test_policy_allows_nothing_inline_nor_foreign() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_hsts_only_over_https() -> None:
    assert "Strict-Transport-Security" in dict(security_headers(tls=True))
    assert "Strict-Transport-Security" not in dict(security_headers(tls=False))


@pytest.mark.parametrize("host", ["localhost", "localhost:8443", "LOCALHOST.", "app.localhost:443"])
def test_no_hsts_for_localhost(host: str) -> None:
    # One visit would pin http://localhost on every port for a year.
    assert "Strict-Transport-Security" not in dict(security_headers(tls=True, host=host))


@pytest.mark.parametrize("host", ["example.com", "127.0.0.1:8443", "[::1]:8443", "localhost.example.com"])
def test_hsts_for_other_hosts(host: str) -> None:
    assert "Strict-Transport-Security" in dict(security_headers(tls=True, host=host))


def test_a_page_asked_for_as_localhost_pins_nothing(served: ServeProcess) -> None:
    request = f"GET / HTTP/1.1\r\nHost: localhost:{served.port}\r\nConnection: close\r\n\r\n"
    status, headers, _ = fetch(served, request.encode("latin-1"), tls=True)
    assert status == 200
    assert "strict-transport-security" not in headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_plain_http_server_sends_no_hsts(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--no-tls")
    try:
        status, headers, _ = get(server, "/", tls=False)
    finally:
        server.stop()
    assert status == 200
    assert "strict-transport-security" not in headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", ["index.html", "dashboard.html"])
def test_html_has_no_inline_script_or_style(name: str) -> None:
    html = _web(name).decode("utf-8")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None  # no inline body
    assert "<style" not in html
    assert re.search(r"\sstyle=", html) is None
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    assert "http://" not in html and "https://" not in html  # no CDN


@pytest.mark.parametrize("name", ["demo.js", "dashboard.js"])
def test_scripts_never_write_html(name: str) -> None:
    script = _web(name).decode("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_other_methods_and_upgrades_are_refused(served: ServeProcess) -> None:
    post = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, headers, _ = fetch(served, post.encode())
    assert status == 405
    assert headers["allow"] == "GET"
    upgrade = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    status, _, _ = fetch(served, upgrade.encode())
    assert status == 400


def test_unknown_path_is_404(served: ServeProcess) -> None:
    status, _, _ = get(served, "/nothing-here")
    assert status == 404
