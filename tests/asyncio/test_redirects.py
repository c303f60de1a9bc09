"""Redirects of the opening handshake, against real servers answering 3xx from ``process_request``."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from tests.asyncio.raw import echo, port_of
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import InvalidHandshake, InvalidStatus
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.headers import Headers

TIMEOUT = 10
QUIET = {"ping_interval": None, "close_timeout": 2}


@dataclass
class Site:
    """A server that redirects the paths in :attr:`routes` and echoes on the others.

    ``routes`` maps a request target to ``(status, Location)``; the Location
    may hold ``{port}``, this server's port. :attr:`requests` lists what arrived.
    """

    port: int = 0
    routes: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def redirect(self, ws: ServerConnection, request: Request) -> Reject | None:
        self.requests.append(request)
        route = self.routes.get(request.target)
        if route is None:
            return None
        status, location = route
        headers = Headers()
        if location is not None:
            headers["Location"] = location.format(port=self.port)
        return Reject(status, headers, b"" if status == 304 else b"moved\n")

    @property
    def targets(self) -> list[str]:
        return [request.target for request in self.requests]


@asynccontextmanager
async def site(
    context: ssl.SSLContext | None, routes: dict[str, tuple[int, str | None]]
) -> AsyncIterator[Site]:
    """Run a :class:`Site` on 127.0.0.1 (TLS with ``context``)."""
    web = Site(routes=routes)
    async with serve(echo, "127.0.0.1", 0, ssl=context, process_request=web.redirect, **QUIET) as server:
        web.port = port_of(server)
        yield web


async def roundtrip(uri: str, **options: object) -> str:
    """Connect, echo one message, return the target of the request that succeeded."""
    async with connect(uri, **QUIET, **options) as ws:  # type: ignore[arg-type]
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ping"
        assert ws.request is not None
        return ws.request.target


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_each_redirect_status_is_followed(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, status: int
) -> None:
    async with site(server_ssl, {"/old": (status, "/new?x=1")}) as web:
        target = await roundtrip(f"wss://127.0.0.1:{web.port}/old", ssl=client_ssl)
    assert target == "/new?x=1"
    assert web.targets == ["/old", "/new?x=1"]


@pytest.mark.parametrize(
    ("location", "final"),
    [
        ("wss://127.0.0.1:{port}/absolute", "/absolute"),
        ("https://127.0.0.1:{port}/https", "/https"),
        ("//127.0.0.1:{port}/scheme-relative", "/scheme-relative"),
        ("sibling", "/a/b/sibling"),
        ("../up?q=1", "/a/up?q=1"),
        ("/rooted#fragment", "/rooted"),
    ],
)
async def test_locations_are_resolved(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, location: str, final: str
) -> None:
    async with site(server_ssl, {"/a/b/c": (302, location)}) as web:
        assert await roundtrip(f"wss://127.0.0.1:{web.port}/a/b/c", ssl=client_ssl) == final
    assert web.targets == ["/a/b/c", final]


async def test_an_http_location_leads_to_ws() -> None:
    async with site(None, {"/": (307, "http://127.0.0.1:{port}/plain")}) as web:
        assert await roundtrip(f"ws://127.0.0.1:{web.port}/") == "/plain"


async def test_a_chain_across_servers(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async with site(server_ssl, {}) as second, site(server_ssl, {}) as first:
        first.routes["/start"] = (301, f"wss://localhost:{second.port}/middle")
        second.routes["/middle"] = (308, f"wss://127.0.0.1:{first.port}/end")
        assert await roundtrip(f"wss://127.0.0.1:{first.port}/start", ssl=client_ssl) == "/end"
    assert first.targets == ["/start", "/end"] and second.targets == ["/middle"]
    # Each hop names the host it goes to.
    assert second.requests[0].headers["Host"] == f"localhost:{second.port}"


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def test_a_redirect_within_the_origin_keeps_credentials(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with site(server_ssl, {"/old": (302, "/new")}) as web:
        await roundtrip(
            f"wss://alice:s3cret@127.0.0.1:{web.port}/old",
            ssl=client_ssl,
            additional_headers={"Cookie": "id=1"},
        )
    old, new = web.requests
    for request in (old, new):
        assert request.headers["Authorization"] == basic("alice:s3cret")
        assert request.headers["Cookie"] == "id=1"


@pytest.mark.parametrize("via", ["url", "header"])
async def test_a_redirect_to_another_origin_drops_credentials(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, via: str
) -> None:
    async with site(server_ssl, {}) as other, site(server_ssl, {}) as web:
        # Same host, another port: another origin. It sends the client back
        # home, and the credentials stay dropped.
        web.routes["/old"] = (302, f"wss://127.0.0.1:{other.port}/elsewhere")
        other.routes["/elsewhere"] = (302, f"wss://127.0.0.1:{web.port}/home")
        headers = {"Cookie": "id=1", "X-Trace": "kept"}
        userinfo = "alice:s3cret@" if via == "url" else ""
        if via == "header":
            headers["Authorization"] = basic("alice:s3cret")
        target = await roundtrip(
            f"wss://{userinfo}127.0.0.1:{web.port}/old", ssl=client_ssl, additional_headers=headers
        )
    assert target == "/home"
    first, home = web.requests
    [elsewhere] = other.requests
    assert first.headers["Authorization"] == basic("alice:s3cret") and first.headers["Cookie"] == "id=1"
    for request in (elsewhere, home):
        assert "Authorization" not in request.headers and "Cookie" not in request.headers
        assert request.headers["X-Trace"] == "kept"


async def test_a_change_of_host_name_is_another_origin(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with site(server_ssl, {"/old": (301, "wss://localhost:{port}/new")}) as web:
        await roundtrip(f"wss://alice:pw@127.0.0.1:{web.port}/old", ssl=client_ssl)
    assert "Authorization" in web.requests[0].headers
    assert "Authorization" not in web.requests[1].headers


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_a_redirect_from_wss_to_ws_is_refused(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, scheme: str
) -> None:
    async with site(None, {}) as plain, site(server_ssl, {}) as web:
        web.routes["/"] = (302, f"{scheme}://127.0.0.1:{plain.port}/")
        with pytest.raises(InvalidHandshake, match=r"wss:// to ws://") as caught:
            await connect(f"wss://127.0.0.1:{web.port}/", ssl=client_ssl, **QUIET)  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, InvalidStatus)
    assert plain.requests == []


async def test_a_redirect_from_ws_to_wss_goes_over_tls(server_ssl: ssl.SSLContext) -> None:
    async with site(server_ssl, {}) as secure, site(None, {}) as plain:
        plain.routes["/"] = (302, f"wss://127.0.0.1:{secure.port}/")
        # The default context does not trust the test CA: TLS was attempted and verified.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(f"ws://127.0.0.1:{plain.port}/", **QUIET)  # type: ignore[arg-type]


@pytest.mark.parametrize(("max_redirects", "requests"), [(3, 4), (10, 11)])
async def test_too_many_redirects(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, max_redirects: int, requests: int
) -> None:
    options: dict[str, object] = {} if max_redirects == 10 else {"max_redirects": max_redirects}
    async with site(server_ssl, {"/loop": (307, "/loop")}) as web:
        with pytest.raises(
            InvalidHandshake, match=f"too many redirects: more than {max_redirects}"
        ) as caught:
            await connect(f"wss://127.0.0.1:{web.port}/loop", ssl=client_ssl, **options)  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, InvalidStatus)
    assert len(web.requests) == requests


async def test_max_redirects_zero_follows_none(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with site(server_ssl, {"/old": (302, "/new")}) as web:
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"wss://127.0.0.1:{web.port}/old", ssl=client_ssl, max_redirects=0)
    assert caught.value.response.status == 302
    assert caught.value.response.headers["Location"] == "/new"
    assert web.targets == ["/old"]


@pytest.mark.parametrize(
    ("route", "error", "match"),
    [
        ((302, None), InvalidStatus, "HTTP 302"),
        ((302, "ftp://127.0.0.1/file"), InvalidHandshake, "not ws, wss, http or https"),
        ((302, "wss://[::1/broken"), InvalidHandshake, "invalid redirect Location"),
        ((302, "wss://127.0.0.1:99999/"), InvalidHandshake, "invalid redirect Location"),
        ((300, "/new"), InvalidStatus, "HTTP 300"),
        ((304, "/new"), InvalidStatus, "HTTP 304"),
    ],
)
async def test_redirects_that_cannot_be_followed(
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
    route: tuple[int, str | None],
    error: type[Exception],
    match: str,
) -> None:
    async with site(server_ssl, {"/": route}) as web:
        with pytest.raises(error, match=match):
            await connect(f"wss://127.0.0.1:{web.port}/", ssl=client_ssl)
    assert web.targets == ["/"]


def test_max_redirects_is_checked() -> None:
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="max_redirects"):
            connect("wss://example.com/", max_redirects=bad)  # type: ignore[arg-type]


async def test_open_timeout_covers_the_whole_chain(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hops = 0

    async def slow_redirect(ws: ServerConnection, request: Request) -> Reject:
        nonlocal hops
        hops += 1
        await asyncio.sleep(0.1)  # each answer takes a while; together more than open_timeout
        return Reject(302, Headers([("Location", "/again")]))

    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, process_request=slow_redirect, **QUIET) as server:
        with pytest.raises(TimeoutError):
            await connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, open_timeout=0.5)
    assert 2 <= hops < 10
