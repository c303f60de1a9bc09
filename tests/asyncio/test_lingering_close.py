"""A client still sending when the server refuses its request reads the whole answer.

Without a lingering close the server's socket closes with the client's bytes
unread, the kernel answers them with a TCP reset, and the reset can destroy
the 431 before the client reads it. Each case runs 20 times, over ws:// and
over wss://, and the server must end up with no connection left.
"""

from __future__ import annotations

import asyncio
import ssl
from contextlib import suppress

import pytest

from tests.asyncio.raw import echo, port_of
from wsskit.asyncio import Server, serve
from wsskit.asyncio.lingering import LINGER_BYTES

ROUNDS = 20
HEAD_SIZE = 2**20  # far over the 64 KiB head limit


def big_head(port: int) -> bytes:
    # Header lines under the line limit, many of them: the head limit strikes.
    line = b"X-Padding: " + b"a" * 8000 + b"\r\n"
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n".encode()
    while len(head) < HEAD_SIZE:
        head += line
    return head + b"\r\n"


async def send_and_read_answer(port: int, head: bytes, client_ssl: ssl.SSLContext | None) -> bytes:
    """Send ``head`` while reading; return everything the server sent before its end."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ssl, server_hostname="localhost" if client_ssl else None
    )

    async def send() -> None:
        # The server stops reading at some point: a failed write is expected.
        with suppress(ConnectionError, ssl.SSLError):
            writer.write(head)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError as exc:
                raise AssertionError(
                    f"reset after {sum(len(chunk) for chunk in chunks)} bytes: {b''.join(chunks)[:60]!r}"
                ) from exc
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sender.cancel()
        with suppress(asyncio.CancelledError):
            await sender
        writer.transport.abort()


def assert_complete_431(answer: bytes) -> None:
    head, separator, body = answer.partition(b"\r\n\r\n")
    assert separator, f"incomplete answer: {answer[:200]!r}"
    assert head.startswith(b"HTTP/1.1 431 "), head
    length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert length, head
    assert len(body) == int(length[0].split(b":", 1)[1]), (head, body)


async def wait_empty(server: Server) -> None:
    # The lingering close is bounded (about 2 s); give it ample time under load.
    for _ in range(2000):
        if not server._all:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(server._all)} connections left on the server")


@pytest.mark.parametrize(
    ("secure", "tls_transport"),
    [(False, "wsskit"), (True, "wsskit"), (True, "asyncio")],
    ids=["ws", "wss", "wss-asyncio-tls"],
)
async def test_client_sending_a_huge_head_reads_the_whole_431(
    secure: bool, tls_transport: str, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with serve(
        echo,
        "127.0.0.1",
        0,
        ssl=server_ssl if secure else None,
        tls_transport=tls_transport,
        ping_interval=None,
    ) as server:
        port = port_of(server)
        head = big_head(port)
        for _ in range(ROUNDS):
            answer = await send_and_read_answer(port, head, client_ssl if secure else None)
            assert_complete_431(answer)
        await wait_empty(server)


async def test_lingering_is_bounded() -> None:
    # A client that never stops sending is cut off (after the byte or the
    # time bound): its writes fail before it has sent 16 times the byte bound.
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = port_of(server)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        with pytest.raises(ConnectionError):
            writer.write(big_head(port))
            await writer.drain()
            sent += HEAD_SIZE
            while sent < 16 * LINGER_BYTES:
                writer.write(b"x" * 65536)
                sent += 65536
                await writer.drain()
        writer.transport.abort()
        await wait_empty(server)


async def test_lingering_ends_for_a_client_that_never_ends() -> None:
    # The client sends its huge head and then waits forever, neither reading
    # on nor closing: the server lets go once the time bound passes.
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = port_of(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(big_head(port)[: 2**17])  # past the head limit, under the byte bound
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert answer.startswith(b"HTTP/1.1 431 ")
            await wait_empty(server)
            # Then the answer's body and a clean end (FIN, not a reset).
            assert await asyncio.wait_for(reader.read(), 30)
            assert reader.at_eof()
        finally:
            writer.transport.abort()
