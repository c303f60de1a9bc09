"""Connecting through proxies: HTTP ``CONNECT`` and SOCKS.

A client behind a proxy asks the proxy for a tunnel to the server, then
speaks TLS and WebSocket through it as if connected directly; the proxy sees
the server's name and port, never the traffic (RFC 9110 §9.3.6).

- ``http://`` and ``https://`` proxies get an HTTP/1.1 ``CONNECT`` request,
  with ``Proxy-Authorization: Basic`` when the proxy URL carries credentials
  (RFC 9110 §11.7.2). With ``https://`` the hop to the proxy is TLS too, and
  the server's TLS runs inside it.
- ``socks5``, ``socks5h``, ``socks4`` and ``socks4a`` proxies go through
  `python-socks <https://pypi.org/project/python-socks/>`_ (``pip install
  'wsskit[socks]'``). The ``h`` and ``a`` variants let the proxy resolve the
  server's name ("remote DNS"); the others resolve it here and send an address.

Which proxy to use comes from the environment as curl and most tools read it
(:func:`proxy_from_environment`): ``https_proxy`` for ``wss://``,
``http_proxy`` for ``ws://``, ``all_proxy`` for both, and ``no_proxy`` for the
hosts to reach directly (:func:`bypasses_proxy`). The standard library's
``urllib.request.getproxies`` is not used: it also reads the Windows registry
and macOS settings, and its ``no_proxy`` matching knows neither ports on IP
literals, nor CIDR ranges, nor ``*`` among other entries.

A proxy that refuses the tunnel raises :class:`ProxyError`.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl as _ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import unquote, urlsplit

from .exceptions import InvalidHandshake, InvalidURI, ProxyError
from .protocol.events import Reject
from .protocol.headers import Headers
from .protocol.http import HeadScanner, ResponseHead, build_request, parse_response_head
from .protocol.limits import Limits
from .uri import WebSocketURI, normalize_hostname

if TYPE_CHECKING:
    import socket

__all__ = [
    "Proxy",
    "ProxyError",
    "parse_proxy",
    "proxy_from_environment",
    "bypasses_proxy",
    "create_proxy_connection",
    "PROXY_SCHEMES",
]

#: The proxy URL schemes understood, with their default ports.
PROXY_SCHEMES: Mapping[str, int] = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}

# SOCKS5 replies (RFC 1928 §6) after which the same request can succeed
# later: general failure (1), network (3) or host (4) unreachable, connection
# refused (5), TTL expired (6). The others (not allowed by the ruleset,
# command or address type not supported) and authentication failures will
# fail the same way again.
_TRANSIENT_SOCKS_REPLIES = frozenset({1, 3, 4, 5, 6})

# python-socks takes a timeout of its own; the caller's open_timeout bounds
# the whole connection instead, so this one only has to be long enough.
_NO_TIMEOUT = 24 * 3600.0

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True, slots=True)
class Proxy:
    """A parsed proxy URL.

    ``host`` is lower-case without brackets (IPv6) and IDNA-encoded;
    ``user`` and ``password`` are percent-decoded, None when absent; the
    password is kept out of ``repr``.
    """

    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL without credentials, fit for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def remote_dns(self) -> bool:
        """True when the proxy resolves the server's name (``socks5h``, ``socks4a``, HTTP)."""
        return self.scheme not in ("socks5", "socks4")


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL such as ``http://user:secret@proxy.example:3128``.

    A URL without a scheme (``proxy.example:3128``) means ``http://``, as for
    curl. The port defaults to 80 for ``http``, 443 for ``https`` and 1080
    for SOCKS. A path other than ``/``, a query or a fragment is refused
    rather than ignored.

    Raises :class:`~wsskit.exceptions.InvalidURI` (a :class:`ValueError`)
    for an unsupported scheme or a malformed URL; the message never
    repeats the credentials.
    """
    if not isinstance(url, str):
        raise InvalidURI(f"a proxy URL must be a str, not {type(url).__name__}")
    if not url or any(ord(char) <= 0x20 or 0x7F <= ord(char) <= 0x9F or char.isspace() for char in url):
        raise InvalidURI("a proxy URL must be non-empty, without whitespace or control characters")
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(f"invalid proxy URL {_redact(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        known = ", ".join(PROXY_SCHEMES)
        raise InvalidURI(f"unsupported proxy scheme {scheme!r} in {_redact(url)!r}; use one of {known}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidURI(f"a proxy URL has no path, query or fragment: {_redact(url)!r}")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"proxy URL {_redact(url)!r} has no host")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = normalize_hostname(unquote(host, errors="strict"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidURI(f"proxy URL {_redact(url)!r}: {exc}") from None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme.startswith("socks"):
        # RFC 1929 sends each as a length byte and the bytes; python-socks
        # encodes them as ASCII.
        for value in (user, password):
            if value is not None and not (value.isascii() and len(value) <= 255):
                raise InvalidURI(f"SOCKS credentials must be ASCII, 255 characters at most: {_redact(url)!r}")
    return Proxy(scheme, host, port or PROXY_SCHEMES[scheme], user, password)


def _redact(url: str) -> str:
    # Drop the userinfo: proxy passwords do not belong in exceptions or logs.
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return scheme + sep + authority.rpartition("@")[2] + slash + path


def _getenv(environ: Mapping[str, str], name: str, *, upper: bool = True) -> str | None:
    # The lower-case name wins, as with curl and urllib; empty means unset.
    value = environ.get(name)
    if not value and upper:
        value = environ.get(name.upper())
    return value or None


def proxy_from_environment(uri: WebSocketURI, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the proxy URL the environment gives for ``uri``, or None to connect directly.

    ``wss://`` takes ``https_proxy``, ``ws://`` takes ``http_proxy``, either
    falls back to ``all_proxy``; each may be in upper case too, the lower
    case winning. ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set:
    a CGI script gets request headers as ``HTTP_*`` variables, so a client
    could set it with a ``Proxy:`` header (httpoxy, CVE-2016-5385).
    ``no_proxy`` lists the hosts to reach directly; see :func:`bypasses_proxy`.

    ``environ`` defaults to :data:`os.environ`.
    """
    env = os.environ if environ is None else environ
    no_proxy = _getenv(env, "no_proxy")
    if no_proxy is not None and bypasses_proxy(uri.host, uri.port, no_proxy):
        return None
    if uri.secure:
        found = _getenv(env, "https_proxy")
    else:
        found = _getenv(env, "http_proxy", upper="REQUEST_METHOD" not in env)
    return found or _getenv(env, "all_proxy")


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Return whether ``no_proxy`` says to reach ``host``:``port`` directly.

    ``no_proxy`` is a list of entries separated by commas or whitespace:

    - ``*``: every host;
    - a domain (``example.com``, ``.example.com`` or ``*.example.com``): that
      host and every name under it, but not ``badexample.com``;
    - an IP address (``10.1.2.3``, ``::1`` or ``[::1]``) or a CIDR range
      (``10.0.0.0/8``, ``fd00::/8``): an IP host in it; names are not
      resolved to be compared, as with curl;
    - any of those followed by ``:port`` (``[::1]:8443``): only that port.

    ``host`` is as :func:`wsskit.uri.parse_uri` gives it: lower-case,
    IDNA-encoded, an IPv6 address without brackets. Names are compared
    without case and without a trailing dot.
    """
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.partition("%")[0]
        )
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        if entry == "*":
            return True
        pattern, entry_port = _split_entry(entry.lower())
        if entry_port is not None and entry_port != port:
            continue
        if _matches(host, address, pattern):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    """Split ``host[:port]``, ``[v6][:port]``, a bare IPv6 address or a CIDR range."""
    if entry.startswith("["):
        literal, _, after = entry[1:].partition("]")
        return literal, _entry_port(after[1:]) if after.startswith(":") else None
    if entry.count(":") > 1:
        return entry, None  # a bare IPv6 address or range: no port possible
    pattern, colon, port = entry.partition(":")
    return pattern, _entry_port(port) if colon else None


def _entry_port(text: str) -> int:
    # A port that is no number matches no port (-1) rather than every port.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else -1


def _matches(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, pattern: str) -> bool:
    try:
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return address is not None and address.version == network.version and address in network
    domain = pattern.lstrip("*").lstrip(".").rstrip(".")
    if not domain or address is not None:
        return False
    return host == domain or host.endswith("." + domain)


# -- connecting -----------------------------------------------------------------------


async def create_proxy_connection(
    proxy: Proxy,
    protocol_factory: Callable[[], _P],
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    proxy_ssl: _ssl.SSLContext | None = None,
    user_agent: str | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Open a connection to ``host``:``port`` through ``proxy``, like :meth:`loop.create_connection`.

    With ``ssl`` the connection to the server is TLS (verified against
    ``server_hostname``, by default ``host``), end to end through the
    tunnel: the transport's ``get_extra_info("ssl_object")`` is that of the
    server's TLS session, while ``peername`` is the proxy's address.
    Without ``ssl`` through an ``https://`` proxy, the only TLS is the hop to
    the proxy, and ``ssl_object`` is that session's: the proxy sees the traffic.
    ``proxy_ssl`` is the context for an ``https://`` proxy, by default
    :func:`wsskit.tls.default_client_context`. ``user_agent`` goes into an
    HTTP ``CONNECT`` request.

    No timeout of its own: wrap it in one (the client's ``open_timeout``).

    Raises :class:`ProxyError` when the proxy refuses the tunnel or answers
    something that is not HTTP/SOCKS; :class:`OSError` when the proxy cannot
    be reached; :class:`ssl.SSLError` when either TLS handshake fails;
    :class:`ImportError` for a SOCKS proxy without python-socks.
    """
    if proxy.scheme in ("http", "https"):
        return await _connect_http(
            proxy,
            protocol_factory,
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname or host,
            proxy_ssl=proxy_ssl,
            user_agent=user_agent,
        )
    sock = await _connect_socks(proxy, host, port)
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_connection(
            protocol_factory,
            sock=sock,
            ssl=ssl,
            server_hostname=(server_hostname or host) if ssl is not None else None,
        )
    except BaseException:
        sock.close()
        raise
    return transport, protocol


async def _connect_socks(proxy: Proxy, host: str, port: int) -> socket.socket:
    try:
        from python_socks import ProxyError as SocksError
        from python_socks import ProxyTimeoutError, ProxyType
        from python_socks.async_.asyncio import Proxy as SocksProxy
    except ImportError as exc:
        raise ImportError(
            f"a {proxy.scheme}:// proxy needs python-socks: pip install 'wsskit[socks]'", name=exc.name
        ) from exc
    socks = SocksProxy(
        ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4,
        proxy.host,
        proxy.port,
        username=proxy.user,
        password=proxy.password,
        rdns=proxy.remote_dns,
    )
    try:
        return await socks.connect(host, port, timeout=_NO_TIMEOUT)
    except ProxyTimeoutError:  # only after a day: the caller's timeout comes first
        raise TimeoutError(f"SOCKS proxy {proxy.url} did not answer") from None
    except SocksError as exc:
        code = exc.error_code
        raise ProxyError(
            f"SOCKS proxy {proxy.url} refused the tunnel to {_authority(host, port)}: {exc}",
            reply_code=code,
            transient=proxy.scheme.startswith("socks5") and code in _TRANSIENT_SOCKS_REPLIES,
        ) from exc


def _authority(host: str, port: int) -> str:
    # RFC 9110 §9.3.6: CONNECT's target is host:port, an IPv6 address in brackets.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _TunnelProtocol(asyncio.Protocol):
    """Reads the proxy's answer to ``CONNECT``; the real protocol takes over afterwards."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._buffer = bytearray()
        self._scanner = HeadScanner(Limits(), request=False)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[ResponseHead] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buffer += data
        try:
            parsed = parse_response_head(self._buffer, Limits(), scanner=self._scanner)
        except InvalidHandshake as exc:
            self.answer.set_exception(ProxyError(f"invalid answer from proxy {self._proxy.url}: {exc}"))
            return
        if parsed is None:
            return
        head, end = parsed
        assert self.transport is not None
        # Nothing may be read past the answer before the next protocol
        # (TLS, or the WebSocket connection) is in place.
        self.transport.pause_reading()
        if len(self._buffer) > end and 200 <= head.status < 300:
            # The server speaks only after the client (TLS ClientHello, HTTP
            # request): bytes here came from the proxy and would corrupt the stream.
            self.answer.set_exception(ProxyError(f"proxy {self._proxy.url} sent data after its answer"))
            return
        self.answer.set_result(head)

    def eof_received(self) -> bool | None:
        self._lost(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            error = ProxyError(f"proxy {self._proxy.url} closed the connection before answering CONNECT")
            error.__cause__ = exc
            self.answer.set_exception(error)


async def _connect_http(
    proxy: Proxy,
    protocol_factory: Callable[[], _P],
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None,
    server_hostname: str,
    proxy_ssl: _ssl.SSLContext | None,
    user_agent: str | None,
) -> tuple[asyncio.Transport, _P]:
    loop = asyncio.get_running_loop()
    if proxy.scheme == "https" and proxy_ssl is None:
        from .tls import default_client_context

        proxy_ssl = default_client_context()
    transport, tunnel = await loop.create_connection(
        lambda: _TunnelProtocol(proxy),
        proxy.host,
        proxy.port,
        ssl=proxy_ssl if proxy.scheme == "https" else None,
        server_hostname=proxy.host if proxy.scheme == "https" else None,
    )
    try:
        target = _authority(host, port)
        headers = Headers([("Host", target)])
        if proxy.user is not None:
            credentials = f"{proxy.user}:{proxy.password or ''}".encode()
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        transport.write(build_request("CONNECT", target, headers))
        head = await tunnel.answer
        if not 200 <= head.status < 300:
            # RFC 9110 §9.3.6: any 2xx opens the tunnel; anything else refuses it.
            raise ProxyError(
                f"proxy {proxy.url} refused the tunnel to {target}: HTTP {head.status} {head.reason}".strip(),
                response=Reject(head.status, head.headers),
                transient=head.status in (502, 503, 504),
            )
        protocol = protocol_factory()
        if ssl is None:
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
            return transport, protocol
        try:
            tls_transport = await loop.start_tls(transport, protocol, ssl, server_hostname=server_hostname)
        except TypeError as exc:
            # The selector loop nests TLS in TLS from Python 3.11 on.
            raise NotImplementedError(
                f"this event loop cannot run TLS inside the TLS connection to {proxy.url}: {exc}"
            ) from exc
        if tls_transport is None:  # the loop closed the transport meanwhile
            raise ConnectionResetError(
                f"connection through proxy {proxy.url} closed during the TLS handshake"
            )
        protocol.connection_made(tls_transport)
        return tls_transport, protocol
    except BaseException:
        transport.abort()
        raise
