"""wsskit.asyncio.broadcast: one message to many connections over real sockets, framed once."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.asyncio.raw import port_of, raw_client, read_frame, read_head
from wsskit.asyncio import BroadcastResult, ClientConnection, ServerConnection, broadcast, connect, serve
from wsskit.protocol.handshake import make_key

# The module itself: the package's ``broadcast`` attribute is the function.
broadcast_module = importlib.import_module("wsskit.asyncio.broadcast")

TIMEOUT = 10


class Hub:
    """A server handler that keeps its connections open until told to stop."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.received: asyncio.Queue[tuple[ServerConnection, object]] = asyncio.Queue()
        self.joined = asyncio.Condition()

    async def __call__(self, ws: ServerConnection) -> None:
        async with self.joined:
            self.connections.append(ws)
            self.joined.notify_all()
        with contextlib.suppress(Exception):
            async for message in ws:
                await self.received.put((ws, message))

    async def wait_for(self, count: int) -> None:
        async with self.joined:
            await asyncio.wait_for(self.joined.wait_for(lambda: len(self.connections) >= count), TIMEOUT)


@contextlib.asynccontextmanager
async def hub_server(**options: Any) -> AsyncIterator[tuple[Hub, int]]:
    hub = Hub()
    async with serve(hub, "127.0.0.1", 0, ping_interval=None, close_timeout=1, **options) as server:
        yield hub, port_of(server)


@contextlib.asynccontextmanager
async def clients(port: int, count: int, **options: Any) -> AsyncIterator[list[ClientConnection]]:
    opened: list[ClientConnection] = []
    try:
        for _ in range(count):
            opened.append(
                await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=1, **options)
            )
        yield opened
    finally:
        for ws in opened:
            await ws.close()


async def test_every_open_connection_gets_the_message() -> None:
    async with hub_server(compression=None) as (hub, port), clients(port, 5) as receivers:
        await hub.wait_for(5)
        assert broadcast(hub.connections, "hello") == BroadcastResult(sent=5)
        assert broadcast(hub.connections, b"\x00\x01" * 40000) == BroadcastResult(sent=5)
        assert broadcast(hub.connections, memoryview(b"view")) == BroadcastResult(sent=5)
        for ws in receivers:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\x01" * 40000
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"view"


async def test_the_message_is_framed_once_for_all_plain_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    framed: list[object] = []
    real_encode_frame = broadcast_module.encode_frame

    def counting_encode_frame(*args: Any, **kwargs: Any) -> Any:
        framed.append(args)
        return real_encode_frame(*args, **kwargs)

    async with hub_server(compression=None) as (hub, port), clients(port, 4) as receivers:
        await hub.wait_for(4)
        per_connection: list[object] = []
        for connection in hub.connections:
            core = connection._core
            monkeypatch.setattr(core, "send_message", lambda data, core=core: per_connection.append(data))
        monkeypatch.setattr(broadcast_module, "encode_frame", counting_encode_frame)
        assert broadcast(hub.connections, b"once") == BroadcastResult(sent=4)
        assert len(framed) == 1 and per_connection == []
        for ws in receivers:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"once"


async def test_with_compression_each_connection_frames_its_own() -> None:
    # Both sides offer permessage-deflate by default: every connection
    # compresses with its own context, and the message still arrives.
    async with hub_server() as (hub, port), clients(port, 3) as receivers:
        await hub.wait_for(3)
        assert all(connection.extensions for connection in hub.connections)
        for message in ("compressed " * 50, b"\x00" * 5000):
            assert broadcast(hub.connections, message) == BroadcastResult(sent=3)
            for ws in receivers:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_closed_connections_are_left_out_and_not_counted() -> None:
    async with hub_server() as (hub, port), clients(port, 3) as receivers:
        await hub.wait_for(3)
        await receivers[0].close()
        await asyncio.wait_for(hub.connections[0].wait_closed(), TIMEOUT)
        assert broadcast(hub.connections, "to the living") == BroadcastResult(sent=2)
        for ws in receivers[1:]:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "to the living"


async def test_compressed_connections_get_their_own_compressed_frame() -> None:
    # Two raw permessage-deflate clients and a plain one. Each compressed
    # connection's frames must decode with its own context, message after
    # message (context takeover): a shared compressed frame could not.
    async with (
        hub_server(compression="deflate") as (hub, port),
        _deflate_client(port) as (reader_a, inflate_a),
        _deflate_client(port) as (reader_b, inflate_b),
        clients(port, 1, compression=None) as plain,
    ):
        await hub.wait_for(3)
        text = "the same words again and again " * 20
        # The first message to one connection only: the contexts differ now.
        assert broadcast(hub.connections[:1], text) == BroadcastResult(sent=1)
        first = await asyncio.wait_for(read_frame(reader_a), TIMEOUT)
        assert inflate_a.decompress(first[1] + b"\x00\x00\xff\xff") == text.encode()
        for _ in range(2):
            assert broadcast(hub.connections, text) == BroadcastResult(sent=3)
            for reader, inflate in ((reader_a, inflate_a), (reader_b, inflate_b)):
                opcode, payload, fin = await asyncio.wait_for(read_frame(reader), TIMEOUT)
                assert (opcode, fin) == (1, True)
                assert len(payload) < len(text)  # compressed
                assert inflate.decompress(payload + b"\x00\x00\xff\xff") == text.encode()
            assert await asyncio.wait_for(plain[0].recv(), TIMEOUT) == text


@contextlib.asynccontextmanager
async def _deflate_client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    async with raw_client(port, upgrade=False) as (reader, writer):
        writer.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {make_key()}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode()
        )
        head = await read_head(reader)
        assert head.startswith(b"HTTP/1.1 101 ") and b"permessage-deflate" in head.lower(), head
        yield reader, zlib.decompressobj(-15)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_client_connections_mask_each_frame(compression: str | None) -> None:
    async with hub_server() as (hub, port), clients(port, 3, compression=compression) as senders:
        await hub.wait_for(3)
        for message in ("from the clients", b"\x01" * 70000):
            assert broadcast(senders, message) == BroadcastResult(sent=3)
            got = [await asyncio.wait_for(hub.received.get(), TIMEOUT) for _ in range(3)]
            assert [received for _, received in got] == [message] * 3
            assert {ws for ws, _ in got} == set(hub.connections)


async def test_a_slow_reader_is_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    # A raw client that reads nothing, with a small receive buffer, behind a
    # small write limit: once its connection's buffer is over the limit the
    # broadcast skips it, and the reading client still gets everything.
    async with (
        hub_server(write_limit=2**12) as (hub, port),
        raw_client(port, rcvbuf=4096),
        clients(port, 1) as (reader,),
    ):
        await hub.wait_for(2)
        for connection in hub.connections:
            # Small kernel buffers, so that few messages fill the slow one's.
            connection.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
        chunk = b"\xaa" * 2**16
        results = []
        for _ in range(40):
            results.append(broadcast(hub.connections, chunk))
            if results[-1].skipped:
                break
            assert await asyncio.wait_for(reader.recv(), TIMEOUT) == chunk
        assert results[-1] == BroadcastResult(sent=1, skipped=1)
        with caplog.at_level(logging.WARNING, logger="wsskit.broadcast"):
            assert broadcast(hub.connections, b"tail", log_skipped=True) == BroadcastResult(sent=1, skipped=1)
        assert "write buffer is over its limit" in caplog.text
        assert await asyncio.wait_for(reader.recv(), TIMEOUT) == chunk
        assert await asyncio.wait_for(reader.recv(), TIMEOUT) == b"tail"


async def test_a_connection_sending_fragments_is_skipped() -> None:
    async with hub_server() as (hub, port), clients(port, 2) as receivers:
        await hub.wait_for(2)
        started, release = asyncio.Event(), asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "frag"
            started.set()  # asked for the next fragment: the first one is out
            await release.wait()
            yield "ment"

        busy = hub.connections[0]
        sending = asyncio.create_task(busy.send(fragments()))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        assert broadcast(hub.connections, "news") == BroadcastResult(sent=1, skipped=1)
        release.set()
        await asyncio.wait_for(sending, TIMEOUT)
        got = {await asyncio.wait_for(ws.recv(), TIMEOUT) for ws in receivers}
        assert got == {"fragment", "news"}


async def test_one_bad_connection_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def _write_broadcast(self, *args: object) -> None:
            raise OSError("broken pipe, say")

    async with hub_server() as (hub, port), clients(port, 2) as receivers:
        await hub.wait_for(2)
        everyone: list[Any] = [hub.connections[0], Broken(), hub.connections[1]]
        with caplog.at_level(logging.ERROR, logger="wsskit.broadcast"):
            assert broadcast(everyone, "still") == BroadcastResult(sent=2, failed=1)
        assert "broken pipe" in caplog.text
        for ws in receivers:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still"


def test_only_str_and_bytes_like_can_be_broadcast() -> None:
    with pytest.raises(TypeError, match="cannot broadcast"):
        broadcast([], 42)  # type: ignore[arg-type]
    assert broadcast([], "nobody") == BroadcastResult()
