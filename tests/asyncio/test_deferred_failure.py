"""A peer's violation arriving with valid messages: they are answered before the Close."""

from __future__ import annotations

import asyncio

from wsskit.asyncio import ServerConnection, serve
from wsskit.protocol.frames import Opcode, encode_frame

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _masked(opcode: int, payload: bytes) -> bytes:
    return b"".join(bytes(p) for p in encode_frame(opcode, payload, mask=True))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    return head[0] & 0x0F, await reader.readexactly(length)


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_message_before_violation_is_echoed_then_1002() -> None:
    async with serve(_echo, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        await reader.readuntil(b"\r\n\r\n")
        # Autobahn 3.2 in one write: a valid message, a frame with RSV2 set, a ping.
        writer.write(_masked(Opcode.TEXT, b"Hello, world!") + b"\xa1\x80abcd" + _masked(Opcode.PING, b""))
        assert await _read_frame(reader) == (Opcode.TEXT, b"Hello, world!")
        opcode, payload = await _read_frame(reader)
        assert opcode == Opcode.CLOSE and payload[:2] == b"\x03\xea"
        assert await reader.read() == b""
        writer.close()


async def test_handler_that_never_reads_again_still_fails_after_close_timeout() -> None:
    release = asyncio.Event()
    results: list[object] = []

    async def stuck(ws: ServerConnection) -> None:
        results.append(await ws.recv())
        await release.wait()  # never comes back to recv()

    async with serve(
        stuck, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=0.2
    ) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_masked(Opcode.TEXT, b"one") + _masked(Opcode.TEXT, b"two") + b"\x83\x80abcd")
        opcode, payload = await asyncio.wait_for(_read_frame(reader), 5)
        assert opcode == Opcode.CLOSE and payload[:2] == b"\x03\xea"
        assert results == ["one"]
        writer.close()
        release.set()
