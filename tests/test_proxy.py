"""Proxies: URL and environment parsing, and wss:// through real HTTP CONNECT and SOCKS5 proxies.

The proxies (tests/proxies) run on loopback and count the tunnels they open,
so every test that expects a proxied connection also proves the bytes went
through the proxy, and that the proxy saw TLS records rather than WebSocket
traffic.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.asyncio.raw import echo, port_of, raw_server
from tests.proxies import HttpConnectProxy, Socks5Proxy
from wsskit import tls
from wsskit.asyncio import Server, connect, serve
from wsskit.certs import DevCertificates, ensure_dev_certificates
from wsskit.exceptions import InvalidHandshake, InvalidURI
from wsskit.proxy import Proxy, ProxyError, bypasses_proxy, parse_proxy, proxy_from_environment
from wsskit.reconnect import GiveUp, ReconnectPolicy
from wsskit.uri import parse_uri

TIMEOUT = 10
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """The server's CA and leaf (localhost, 127.0.0.1, ::1)."""
    return ensure_dev_certificates(tmp_path_factory.mktemp("server-ca"))[0]


@pytest.fixture(scope="module")
def proxy_certificates(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """Another CA and leaf for the https:// proxy, so that its TLS cannot pass for the server's."""
    return ensure_dev_certificates(tmp_path_factory.mktemp("proxy-ca"), hosts=["127.0.0.1"])[0]


@pytest.fixture(scope="module")
def client_ssl(certificates: DevCertificates) -> ssl.SSLContext:
    return tls.client_context(cafile=certificates.ca_cert)


@pytest.fixture(scope="module")
def proxy_ssl(proxy_certificates: DevCertificates) -> ssl.SSLContext:
    return tls.client_context(cafile=proxy_certificates.ca_cert)


@pytest.fixture
async def server(certificates: DevCertificates) -> AsyncIterator[Server]:
    """A wss:// echo server on 127.0.0.1."""
    context = tls.server_context(certificates.cert, certificates.key)
    async with serve(echo, "127.0.0.1", 0, ssl=context, ping_interval=None, close_timeout=2) as wss_server:
        yield wss_server


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without proxy variables, whatever the machine sets."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def server_der(certificates: DevCertificates) -> bytes:
    """The server's leaf certificate, DER-encoded, to compare with what the client saw."""
    pem = Path(certificates.cert).read_text()
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


async def echo_once(uri: str, **options: object) -> tuple[object, object, bytes | None]:
    """Connect, echo one message, and return (remote_address, echoed, server certificate)."""
    async with connect(uri, ping_interval=None, close_timeout=2, **options) as ws:  # type: ignore[arg-type]
        await ws.send("through the tunnel")
        echoed = await asyncio.wait_for(ws.recv(), TIMEOUT)
        ssl_object = ws.transport.get_extra_info("ssl_object")
        der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        return ws.remote_address, echoed, der


# -- proxy URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy.example:3128", Proxy("http", "proxy.example", 3128)),
        ("http://proxy.example", Proxy("http", "proxy.example", 80)),
        ("https://proxy.example/", Proxy("https", "proxy.example", 443)),
        ("socks5://127.0.0.1", Proxy("socks5", "127.0.0.1", 1080)),
        ("SOCKS5H://Proxy.Example:1081", Proxy("socks5h", "proxy.example", 1081)),
        ("proxy.example:8080", Proxy("http", "proxy.example", 8080)),
        ("http://[::1]:3128", Proxy("http", "::1", 3128)),
        ("http://al%40ce:p%3Ass@proxy:1", Proxy("http", "proxy", 1, "al@ce", "p:ss")),
        ("http://bob@proxy:1", Proxy("http", "proxy", 1, "bob", None)),
    ],
)
def test_parse_proxy(url: str, expected: Proxy) -> None:
    proxy = parse_proxy(url)
    assert proxy == expected
    assert proxy.password == expected.password


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hunter2@proxy:21",
        "http://user:hunter2@proxy:99999",
        "http://user:hunter2@proxy:1/path",
        "http://user:hunter2@proxy:1?q",
        "http://user:hunter2@ proxy:1",
        "http://user:hunter2@:3128",
        "http://user:hunter2@bad_label-.example:1",
        "socks5://user:hunter2\u00e9@proxy",
        "socks5://user:hunter2%C3%A9@proxy",
        "",
    ],
)
def test_parse_proxy_refuses_bad_urls_without_echoing_the_password(url: str) -> None:
    with pytest.raises(InvalidURI) as caught:
        parse_proxy(url)
    assert "hunter2" not in str(caught.value)


def test_proxy_repr_and_url_hide_the_password() -> None:
    proxy = parse_proxy("socks5h://alice:hunter2@proxy:1080")
    assert "hunter2" not in repr(proxy) and "hunter2" not in proxy.url
    assert proxy.url == "socks5h://proxy:1080" and proxy.remote_dns
    assert not parse_proxy("socks5://proxy").remote_dns


# -- the environment ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("example.com", 443, "*", True),
        ("example.com", 443, "other.org, *", True),
        ("example.com", 443, "example.com", True),
        ("api.example.com", 443, "example.com", True),
        ("api.example.com", 443, ".example.com", True),
        ("api.example.com", 443, "*.example.com", True),
        ("example.com", 443, ".example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("example.com", 443, "EXAMPLE.COM.", True),
        ("example.com", 443, "example.org other.net", False),
        ("example.com", 8443, "example.com:8443", True),
        ("example.com", 443, "example.com:8443", False),
        ("example.com", 443, "example.com:http", False),
        ("10.1.2.3", 443, "10.1.2.3", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("10.1.2.3", 443, "10.1.2.3:443", True),
        ("10.1.2.3", 443, "10.1.2.3:80", False),
        ("::1", 443, "::1", True),
        ("::1", 443, "[::1]", True),
        ("::1", 8443, "[::1]:8443", True),
        ("::1", 443, "[::1]:8443", False),
        ("fd00::5", 443, "fd00::/8", True),
        ("fd00::5", 443, "10.0.0.0/8", False),
        ("127.0.0.1", 443, "localhost", False),  # names are not resolved
        ("example.com", 443, "", False),
        ("example.com", 443, " , ,", False),
    ],
)
def test_no_proxy_matching(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_proxy_from_environment_picks_the_variable_for_the_scheme() -> None:
    wss, ws = parse_uri("wss://example.com/"), parse_uri("ws://example.com/")
    env = {"https_proxy": "http://s:1", "http_proxy": "http://p:1", "all_proxy": "socks5://a:1"}
    assert proxy_from_environment(wss, env) == "http://s:1"
    assert proxy_from_environment(ws, env) == "http://p:1"
    assert proxy_from_environment(wss, {"all_proxy": "socks5://a:1"}) == "socks5://a:1"
    assert proxy_from_environment(ws, {"ALL_PROXY": "socks5://a:1"}) == "socks5://a:1"
    assert proxy_from_environment(wss, {"HTTPS_PROXY": "http://upper:1"}) == "http://upper:1"
    # The lower-case name wins; an empty value counts as unset.
    assert (
        proxy_from_environment(wss, {"https_proxy": "http://l:1", "HTTPS_PROXY": "http://u:1"})
        == "http://l:1"
    )
    assert proxy_from_environment(wss, {"https_proxy": "", "all_proxy": "http://a:1"}) == "http://a:1"
    assert proxy_from_environment(wss, {}) is None
    # http_proxy serves ws:// only.
    assert proxy_from_environment(wss, {"http_proxy": "http://p:1"}) is None


def test_proxy_from_environment_honours_no_proxy() -> None:
    env = {"https_proxy": "http://s:1", "NO_PROXY": "internal.example, 10.0.0.0/8"}
    assert proxy_from_environment(parse_uri("wss://a.internal.example/"), env) is None
    assert proxy_from_environment(parse_uri("wss://10.9.8.7/"), env) is None
    assert proxy_from_environment(parse_uri("wss://example.com/"), env) == "http://s:1"


def test_upper_case_http_proxy_is_ignored_in_a_cgi_request() -> None:
    # httpoxy: in CGI, HTTP_PROXY may come from the request's "Proxy:" header.
    uri = parse_uri("ws://example.com/")
    assert proxy_from_environment(uri, {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}) is None
    assert proxy_from_environment(uri, {"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}) == "http://p:1"
    assert proxy_from_environment(uri, {"HTTP_PROXY": "http://p:1"}) == "http://p:1"


def test_connect_checks_the_proxy_argument_at_once() -> None:
    with pytest.raises(InvalidURI):
        connect("wss://example.com/", proxy="gopher://proxy:70")
    with pytest.raises(TypeError):
        connect("wss://example.com/", proxy=3128)  # type: ignore[arg-type]


# -- HTTP CONNECT -----------------------------------------------------------------------


async def test_wss_through_an_http_proxy(
    server: Server, client_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    async with HttpConnectProxy() as proxy:
        remote, echoed, der = await echo_once(
            f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, proxy=f"http://127.0.0.1:{proxy.port}"
        )
    assert echoed == "through the tunnel"
    assert len(proxy.tunnels) == 1
    tunnel = proxy.tunnels[0]
    assert (tunnel.host, tunnel.port) == ("127.0.0.1", port_of(server))
    assert tunnel.headers["host"] == f"127.0.0.1:{port_of(server)}"
    assert "wsskit/" in tunnel.headers["user-agent"]
    # The proxy relayed a TLS handshake record (0x16), never the HTTP upgrade.
    assert tunnel.first_bytes[0] == 0x16 and b"Upgrade" not in tunnel.first_bytes
    assert remote[1] == proxy.port  # type: ignore[index]
    assert der == server_der(certificates)


async def test_ws_through_an_http_proxy() -> None:
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as plain, HttpConnectProxy() as proxy:
        _, echoed, der = await echo_once(
            f"ws://127.0.0.1:{port_of(plain)}/chat", proxy=f"127.0.0.1:{proxy.port}"
        )
    assert echoed == "through the tunnel" and der is None
    assert proxy.tunnels[0].first_bytes.startswith(b"GET /chat HTTP/1.1\r\n")


async def test_proxy_credentials_are_sent_as_basic(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with HttpConnectProxy(credentials=("alice", "s3cret:!")) as proxy:
        _, echoed, _ = await echo_once(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            proxy=f"http://alice:s3cret%3A%21@127.0.0.1:{proxy.port}",
        )
    assert echoed == "through the tunnel"
    expected = "Basic " + base64.b64encode(b"alice:s3cret:!").decode()
    assert proxy.tunnels[0].headers["proxy-authorization"] == expected


@pytest.mark.parametrize("userinfo", ["", "alice:wrong@"])
async def test_407_raises_a_proxy_error(server: Server, client_ssl: ssl.SSLContext, userinfo: str) -> None:
    async with HttpConnectProxy(credentials=("alice", "s3cret")) as proxy:
        with pytest.raises(ProxyError) as caught:
            await connect(
                f"wss://127.0.0.1:{port_of(server)}/",
                ssl=client_ssl,
                proxy=f"http://{userinfo}127.0.0.1:{proxy.port}",
            )
    error = caught.value
    assert isinstance(error, InvalidHandshake)
    assert error.response is not None and error.response.status == 407
    assert error.response.headers["Proxy-Authenticate"] == 'Basic realm="test"'
    assert "407" in str(error) and "wrong" not in str(error)
    assert not error.transient
    assert proxy.tunnels == [] and proxy.refused == 1


async def test_a_refused_tunnel_raises_a_proxy_error(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with HttpConnectProxy(allowed_ports={443}) as proxy:
        with pytest.raises(ProxyError) as caught:
            await connect(
                f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, proxy=f"http://127.0.0.1:{proxy.port}"
            )
    assert caught.value.response is not None and caught.value.response.status == 403
    assert proxy.tunnels == []


async def test_a_proxy_that_answers_garbage_raises_a_proxy_error(client_ssl: ssl.SSLContext) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(garbage) as port:
        with pytest.raises(ProxyError, match="invalid answer"):
            await connect("wss://127.0.0.1:1/", ssl=client_ssl, proxy=f"http://127.0.0.1:{port}")


async def test_open_timeout_covers_the_proxy(client_ssl: ssl.SSLContext) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the CONNECT, never answers

    loop = asyncio.get_running_loop()
    async with raw_server(silent) as port:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await connect(
                "wss://127.0.0.1:1/", ssl=client_ssl, proxy=f"http://127.0.0.1:{port}", open_timeout=0.3
            )
        assert loop.time() - started < 5


async def test_an_unreachable_proxy_raises_oserror(client_ssl: ssl.SSLContext) -> None:
    async with raw_server(echo_nothing) as port:
        pass  # now closed: nothing listens on the port
    with pytest.raises(OSError):
        await connect("wss://127.0.0.1:1/", ssl=client_ssl, proxy=f"http://127.0.0.1:{port}")


async def echo_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


# -- https:// proxies: TLS inside TLS ---------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio nests TLS in TLS from Python 3.11")
async def test_wss_through_an_https_proxy(
    server: Server,
    client_ssl: ssl.SSLContext,
    proxy_ssl: ssl.SSLContext,
    certificates: DevCertificates,
    proxy_certificates: DevCertificates,
) -> None:
    context = tls.server_context(proxy_certificates.cert, proxy_certificates.key)
    async with HttpConnectProxy(ssl=context, credentials=("alice", "s3cret")) as proxy:
        _, echoed, der = await echo_once(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            proxy=f"https://alice:s3cret@127.0.0.1:{proxy.port}",
            proxy_ssl=proxy_ssl,
        )
    assert echoed == "through the tunnel"
    assert proxy.tls_clients == 1 and len(proxy.tunnels) == 1
    # Inside the proxy's TLS, the proxy still only relayed the server's TLS.
    assert proxy.tunnels[0].first_bytes[0] == 0x16
    # The connection's TLS object is the server's session, not the proxy's.
    assert der == server_der(certificates)
    assert der != server_der(proxy_certificates)


async def test_an_https_proxy_is_verified(
    server: Server, client_ssl: ssl.SSLContext, proxy_certificates: DevCertificates
) -> None:
    context = tls.server_context(proxy_certificates.cert, proxy_certificates.key)
    async with HttpConnectProxy(ssl=context) as proxy:
        # client_ssl trusts the server's CA, not the proxy's.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(
                f"wss://127.0.0.1:{port_of(server)}/",
                ssl=client_ssl,
                proxy=f"https://127.0.0.1:{proxy.port}",
                proxy_ssl=client_ssl,
            )
    assert proxy.tunnels == []


# -- SOCKS5 -----------------------------------------------------------------------------


async def test_wss_through_socks5(
    server: Server, client_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    async with Socks5Proxy(credentials=("bob", "pa:ss")) as proxy:
        remote, echoed, der = await echo_once(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            proxy=f"socks5://bob:pa%3Ass@127.0.0.1:{proxy.port}",
        )
    assert echoed == "through the tunnel" and der == server_der(certificates)
    assert len(proxy.tunnels) == 1
    tunnel = proxy.tunnels[0]
    assert (tunnel.address_type, tunnel.host, tunnel.port) == (1, "127.0.0.1", port_of(server))
    assert tunnel.first_bytes[0] == 0x16
    assert remote[1] == proxy.port  # type: ignore[index]


async def test_socks5h_lets_the_proxy_resolve_the_name(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with Socks5Proxy() as proxy:
        _, echoed, _ = await echo_once(
            f"wss://localhost:{port_of(server)}/", ssl=client_ssl, proxy=f"socks5h://127.0.0.1:{proxy.port}"
        )
    assert echoed == "through the tunnel"
    assert (proxy.tunnels[0].address_type, proxy.tunnels[0].host) == (3, "localhost")


async def test_socks5_resolves_the_name_here(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with Socks5Proxy() as proxy:
        _, echoed, _ = await echo_once(
            f"wss://localhost:{port_of(server)}/", ssl=client_ssl, proxy=f"socks5://127.0.0.1:{proxy.port}"
        )
    assert echoed == "through the tunnel"
    # An address went to the proxy, not the name; TLS still checked "localhost".
    assert proxy.tunnels[0].address_type in (1, 4) and proxy.tunnels[0].host in ("127.0.0.1", "::1")


async def test_socks5_wrong_password_raises_a_proxy_error(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with Socks5Proxy(credentials=("bob", "right")) as proxy:
        with pytest.raises(ProxyError) as caught:
            await connect(
                f"wss://127.0.0.1:{port_of(server)}/",
                ssl=client_ssl,
                proxy=f"socks5://bob:wrong@127.0.0.1:{proxy.port}",
            )
    assert proxy.auth_failures == 1 and proxy.tunnels == []
    assert caught.value.response is None and not caught.value.transient
    assert "wrong" not in str(caught.value)


async def test_socks5_refusals_carry_the_reply_code(server: Server, client_ssl: ssl.SSLContext) -> None:
    async with Socks5Proxy(allowed_ports={port_of(server)}) as proxy:
        uri = f"socks5://127.0.0.1:{proxy.port}"
        with pytest.raises(ProxyError) as not_allowed:
            await connect("wss://127.0.0.1:1/", ssl=client_ssl, proxy=uri)
    async with Socks5Proxy() as proxy:
        with pytest.raises(ProxyError) as refused:
            await connect("wss://127.0.0.1:1/", ssl=client_ssl, proxy=f"socks5://127.0.0.1:{proxy.port}")
    assert (not_allowed.value.reply_code, not_allowed.value.transient) == (2, False)
    assert (refused.value.reply_code, refused.value.transient) == (5, True)


async def test_socks_without_python_socks_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(ImportError, match=r"wsskit\[socks\]"):
        await connect("wss://127.0.0.1:1/", proxy="socks5://127.0.0.1:1080")


# -- the environment, for real ----------------------------------------------------------


async def test_the_environment_proxy_is_used_by_default(
    server: Server, client_ssl: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"wss://127.0.0.1:{port_of(server)}/"
    async with HttpConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        remote, _, _ = await echo_once(uri, ssl=client_ssl)
        assert len(proxy.tunnels) == 1 and remote[1] == proxy.port  # type: ignore[index]

        # proxy=None connects directly whatever the environment says.
        remote, _, _ = await echo_once(uri, ssl=client_ssl, proxy=None)
        assert len(proxy.tunnels) == 1 and remote[1] == port_of(server)  # type: ignore[index]

        # NO_PROXY with the port: direct.
        monkeypatch.setenv("NO_PROXY", f"example.com, 127.0.0.1:{port_of(server)}")
        remote, _, _ = await echo_once(uri, ssl=client_ssl)
        assert len(proxy.tunnels) == 1 and remote[1] == port_of(server)  # type: ignore[index]

        # ws:// does not take HTTPS_PROXY.
        monkeypatch.delenv("NO_PROXY")
        async with serve(echo, "127.0.0.1", 0, ping_interval=None) as plain:
            await echo_once(f"ws://127.0.0.1:{port_of(plain)}/")
        assert len(proxy.tunnels) == 1


async def test_an_invalid_environment_proxy_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "gopher://user:hunter2@proxy:70")
    with pytest.raises(InvalidURI, match="environment") as caught:
        await connect("wss://127.0.0.1:1/")
    assert "hunter2" not in str(caught.value)


# -- proxies and reconnecting -----------------------------------------------------------


async def test_a_proxy_407_is_not_retried(server: Server, client_ssl: ssl.SSLContext) -> None:
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async with HttpConnectProxy(credentials=("alice", "s3cret")) as proxy:
        connecting = connect(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            proxy=f"http://127.0.0.1:{proxy.port}",
            reconnect=True,
        )
        connecting._sleep = sleep
        with pytest.raises(ProxyError):
            async for _ in connecting:
                pytest.fail("no connection expected")
    assert sleeps == [] and proxy.connections == 1


async def test_a_proxy_502_is_retried(client_ssl: ssl.SSLContext) -> None:
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async with HttpConnectProxy() as proxy:
        # Nothing listens on port 1: the proxy answers 502 Bad Gateway.
        connecting = connect(
            "wss://127.0.0.1:1/",
            ssl=client_ssl,
            proxy=f"http://127.0.0.1:{proxy.port}",
            reconnect=ReconnectPolicy(max_attempts=3),
        )
        connecting._sleep = sleep
        with pytest.raises(GiveUp) as caught:
            async for _ in connecting:
                pytest.fail("no connection expected")
    assert isinstance(caught.value.__cause__, ProxyError)
    assert caught.value.__cause__.response is not None and caught.value.__cause__.response.status == 502
    assert len(sleeps) == 2 and proxy.connections == 3


async def test_a_proxy_503_retry_after_is_honoured(client_ssl: ssl.SSLContext) -> None:
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async with HttpConnectProxy(refuse_with=(503, "Service Unavailable", "Retry-After: 9\r\n")) as proxy:
        connecting = connect(
            "wss://127.0.0.1:1/",
            ssl=client_ssl,
            proxy=f"http://127.0.0.1:{proxy.port}",
            reconnect=ReconnectPolicy(max_attempts=2),
        )
        connecting._sleep = sleep
        connecting._random = lambda: 0.0  # no jitter: the wait is the proxy's Retry-After
        with pytest.raises(GiveUp):
            async for _ in connecting:
                pytest.fail("no connection expected")
    assert sleeps == [9.0] and proxy.refused == 2
