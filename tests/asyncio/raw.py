"""Raw peers for the asyncio tests: hand-written HTTP and frames over asyncio streams.

They play the misbehaving client or server (one that never answers pings,
never reads, never closes) that a well-behaved library cannot play.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from wsskit.asyncio import ClientConnection, Server, ServerConnection, connect, serve
from wsskit.protocol.frames import encode_frame
from wsskit.protocol.handshake import accept_key, make_key

__all__ = [
    "RawFrame",
    "raw_client",
    "raw_server",
    "read_head",
    "read_frame",
    "write_frame",
    "accept_upgrade",
    "random_bytes",
    "port_of",
    "echo",
    "running",
]

RawFrame = tuple[int, bytes, bool]  # (opcode, payload, fin)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """Read an HTTP head up to and including the blank line."""
    return await reader.readuntil(b"\r\n\r\n")


async def read_frame(reader: asyncio.StreamReader) -> RawFrame:
    """Read one frame (masked or not): its opcode, unmasked payload and FIN bit."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b1 & 0x80 else b""
    payload = await reader.readexactly(length)
    if mask:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return b0 & 0x0F, payload, bool(b0 & 0x80)


def write_frame(writer: asyncio.StreamWriter, opcode: int, payload: bytes, *, mask: bool) -> None:
    """Write one final frame."""
    writer.writelines(encode_frame(opcode, payload, mask=mask))


async def accept_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Read a client's upgrade request and answer 101 without extensions; return the request head."""
    head = await read_head(reader)
    key = ""
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
    )
    await writer.drain()
    return head


@asynccontextmanager
async def raw_client(
    port: int, *, upgrade: bool = True, path: str = "/", rcvbuf: int | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open a TCP connection to 127.0.0.1:``port``; with ``upgrade``, do the handshake first.

    ``rcvbuf`` shrinks the socket's receive buffer (set before connecting, so
    that the TCP window follows).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        if upgrade:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {make_key()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await read_head(reader)
            assert head.startswith(b"HTTP/1.1 101 "), head
        yield reader, writer
    finally:
        writer.transport.abort()


@asynccontextmanager
async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1 and yield the port; abort every connection on exit."""
    writers: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        # Let the handlers see the end before the test's loop goes away.
        pending = {task for task in tasks if not task.done()}
        if pending:
            await asyncio.wait(pending, timeout=10)
        await server.wait_closed()


def random_bytes(size: int) -> bytes:
    """Incompressible bytes, so that message sizes survive compression."""
    return os.urandom(size)


def port_of(server: object) -> int:
    """The port a wsskit or asyncio server listens on."""
    sockets = server.sockets  # type: ignore[attr-defined]
    return int(sockets[0].getsockname()[1])


@asynccontextmanager
async def running(
    handler: Callable[[ServerConnection], Awaitable[None]] | None = None,
    *,
    server: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Server, ClientConnection]]:
    """A wsskit server on 127.0.0.1 with ``handler`` (echo by default) and a client connected to it.

    Keepalive is off and timeouts are short unless the options say otherwise.
    """
    server_options: dict[str, Any] = {"ping_interval": None, "close_timeout": 2, **(server or {})}
    client_options: dict[str, Any] = {"ping_interval": None, "close_timeout": 2, **(client or {})}
    secure = "ssl" in server_options
    async with serve(handler or echo, "127.0.0.1", 0, **server_options) as wss_server:
        uri = f"{'wss' if secure else 'ws'}://127.0.0.1:{port_of(wss_server)}/"
        async with connect(uri, **client_options) as ws:
            yield wss_server, ws


async def echo(ws: object) -> None:
    """A handler that sends back every message it receives."""
    async for message in ws:  # type: ignore[attr-defined]
        await ws.send(message)  # type: ignore[attr-defined]
