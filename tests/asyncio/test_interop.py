"""Interoperability with python-websockets, in both roles, over ws:// and wss://."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from tests.asyncio.raw import echo, port_of, random_bytes
from wsskit.asyncio import connect, serve

pytestmark = pytest.mark.interop

TIMEOUT = 10
LARGE = 2**19

MESSAGES: list[str | bytes] = [
    "text",
    "ünïcødé ✓",
    b"\x00\x01binary\xff",
    "",
    b"",
    random_bytes(LARGE),
    "compressible " * 20_000,
]


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["deflate", None], ids=["deflate", "plain"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@asynccontextmanager
async def _tls(
    scheme: str, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    if scheme == "wss":
        yield {"ssl": server_ssl}, {"ssl": client_ssl}
    else:
        yield {}, {}


async def _websockets_echo(ws: WsServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except WsConnectionClosed:
        pass


async def test_websockets_client_against_our_server(
    scheme: str, compression: str | None, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with (
        _tls(scheme, server_ssl, client_ssl) as (server_tls, client_tls),
        serve(echo, "127.0.0.1", 0, compression=compression, ping_interval=None, **server_tls) as server,
    ):
        uri = f"{scheme}://127.0.0.1:{port_of(server)}/"
        async with ws_connect(uri, compression="deflate" if compression else None, **client_tls) as ws:
            for message in MESSAGES:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
            # websockets sends fragments; we reassemble and echo whole.
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"
            await ws.send(iter([b"a" * 1000, b"b" * 1000]))
            assert await ws.recv() == b"a" * 1000 + b"b" * 1000
            latency = await asyncio.wait_for(await ws.ping(), TIMEOUT)
            assert latency >= 0
        assert ws.close_code == 1000


async def test_our_client_against_websockets_server(
    scheme: str, compression: str | None, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with (
        _tls(scheme, server_ssl, client_ssl) as (server_tls, client_tls),
        ws_serve(
            _websockets_echo, "127.0.0.1", 0, compression="deflate" if compression else None, **server_tls
        ) as server,
    ):
        uri = f"{scheme}://127.0.0.1:{port_of(server)}/"
        async with connect(uri, compression=compression, ping_interval=None, **client_tls) as ws:
            assert bool(ws.extensions) is bool(compression)
            for message in MESSAGES:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message

            async def fragments() -> AsyncIterator[bytes]:
                for i in range(5):
                    yield bytes([i]) * 100

            await ws.send(fragments())
            assert await ws.recv() == b"".join(bytes([i]) * 100 for i in range(5))
            await ws.send(["a", "b", "c"])
            assert await ws.recv() == "abc"
            assert await asyncio.wait_for(ws.ping(), TIMEOUT) >= 0
        assert ws.close_code == 1000


async def test_close_codes_across_libraries() -> None:
    async def closer(ws: WsServerConnection) -> None:
        await ws.close(4321, "custom")

    async with (
        ws_serve(closer, "127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None) as ws,
    ):
        from wsskit.exceptions import ConnectionClosedError

        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4321, "custom")

    async def handler(ws: Any) -> None:
        await ws.close(4322, "ours")

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None) as our_server,
        ws_connect(f"ws://127.0.0.1:{port_of(our_server)}/") as theirs,
    ):
        with pytest.raises(WsConnectionClosed):
            await theirs.recv()
        assert (theirs.close_code, theirs.close_reason) == (4322, "ours")


async def test_keepalive_against_websockets() -> None:
    async with (
        ws_serve(_websockets_echo, "127.0.0.1", 0, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=0.01, ping_timeout=5) as ws,
    ):
        # websockets answers our keepalive pings; the connection stays healthy.
        for i in range(3):
            await ws.send(str(i))
            assert await ws.recv() == str(i)
        assert await asyncio.wait_for(ws.ping(), TIMEOUT) >= 0


async def test_an_incompressible_message_of_exactly_max_size_from_websockets() -> None:
    # python-websockets compresses with memory level 5: DEFLATE cuts stored
    # blocks every 2 KiB, so random data grows about 0.3 % and the frame
    # is larger than max_size; the message itself is not (RFC 7692 §7.2.3).
    data = random_bytes(2**16)
    async with (
        serve(echo, "127.0.0.1", 0, compression="deflate", max_size=2**16, ping_interval=None) as server,
        ws_connect(f"ws://127.0.0.1:{port_of(server)}/", max_size=2**17) as ws,
    ):
        await ws.send(data)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == data
