"""Rate limits on serve(): connections by IP, messages and bytes per connection, ping floods.

The limiters read a fake clock that only the test moves, so no test sleeps:
tokens come back only when the test says time has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.asyncio.raw import echo, port_of, raw_client, read_frame, write_frame
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import ConnectionClosedError, InvalidStatus
from wsskit.guards import (
    BYTE_RATE_EXCEEDED,
    MESSAGE_RATE_EXCEEDED,
    ConnectionRateLimiter,
    MessageRateLimiter,
    PingFloodGuard,
)
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.frames import Opcode


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``condition()``: the server releases a slot when it sees the connection end."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_connection_rate_per_ip_answers_429_with_retry_after() -> None:
    clock = FakeClock()
    limiter = ConnectionRateLimiter(per_ip_rate=0.5, per_ip_burst=2, clock=clock)
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, connection_limiter=limiter) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        for _ in range(2):
            async with connect(uri, ping_interval=None) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
        with pytest.raises(InvalidStatus) as info:
            await connect(uri, ping_interval=None)
        assert info.value.response.status == 429
        # One token is missing at 0.5 a second: two seconds.
        assert info.value.response.headers["Retry-After"] == "2"
        clock.now += 2.0
        async with connect(uri, ping_interval=None) as ws:
            await ws.send("back")
            assert await ws.recv() == "back"


async def test_concurrent_connections_per_ip_cap_answers_503_and_frees_on_close() -> None:
    limiter = ConnectionRateLimiter(per_ip_rate=1000, per_ip_burst=1000, max_per_ip=2, busy_retry_after=7)
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, connection_limiter=limiter) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        first = await connect(uri, ping_interval=None)
        second = await connect(uri, ping_interval=None)
        assert limiter.active == 2
        assert limiter.pending == 0  # both handshakes completed
        with pytest.raises(InvalidStatus) as info:
            await connect(uri, ping_interval=None)
        assert info.value.response.status == 503
        assert info.value.response.headers["Retry-After"] == "7"
        assert b"too many connections from this address" in info.value.response.body
        # The refused connection held no slot.
        assert limiter.active == 2
        await first.close()
        await until(lambda: limiter.active == 1)
        third = await connect(uri, ping_interval=None)
        await third.send("third")
        assert await third.recv() == "third"
        # The open ones kept working throughout.
        await second.send("second")
        assert await second.recv() == "second"
        await second.close()
        await third.close()
        await until(lambda: limiter.active == 0)


async def test_handshakes_in_progress_are_capped() -> None:
    limiter = ConnectionRateLimiter(per_ip_rate=1000, per_ip_burst=1000, max_pending_handshakes=1)
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, connection_limiter=limiter) as server:
        port = port_of(server)
        # A client that connects and sends nothing holds a handshake slot.
        async with raw_client(port, upgrade=False):
            await until(lambda: limiter.pending == 1)
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{port}/", ping_interval=None)
            assert info.value.response.status == 503
            assert b"too many handshakes in progress" in info.value.response.body
        await until(lambda: limiter.active == 0)
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"


async def test_plain_http_endpoints_answer_before_the_refusal() -> None:
    # process_request (a health check) still answers when the limiter refuses.
    def health(connection: ServerConnection, request: Request) -> Reject | None:
        return Reject(200, body=b"ok\n") if request.path == "/healthz" else None

    limiter = ConnectionRateLimiter(per_ip_rate=1000, per_ip_burst=1000, max_per_ip=1)
    async with serve(
        echo, "127.0.0.1", 0, ping_interval=None, connection_limiter=limiter, process_request=health
    ) as server:
        port = port_of(server)
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 ")


async def test_message_rate_closes_with_1008_and_the_reason() -> None:
    clock = FakeClock()
    received: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            received.append(message)
            await ws.send(message)

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ping_interval=None,
        message_limiter=lambda: MessageRateLimiter(3, None, message_burst=3, clock=clock),
    ) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        async with connect(uri, ping_interval=None) as ws:
            for i in range(3):
                await ws.send(str(i))
                assert await ws.recv() == str(i)
            await ws.send("one too many")
            await ws.send("after it")
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
        assert info.value.code == 1008
        assert info.value.reason == MESSAGE_RATE_EXCEEDED
        # The refused message and those after it never reached the handler.
        assert received == ["0", "1", "2"]
        # Another connection has its own budget.
        async with connect(uri, ping_interval=None) as other:
            await other.send("fresh")
            assert await other.recv() == "fresh"


async def test_byte_rate_counts_utf8_bytes_of_text() -> None:
    clock = FakeClock()
    async with serve(
        echo,
        "127.0.0.1",
        0,
        ping_interval=None,
        message_limiter=lambda: MessageRateLimiter(None, 100, byte_burst=100, clock=clock),
    ) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        async with connect(uri, ping_interval=None) as ws:
            await ws.send("é" * 40)  # 80 bytes: within the burst
            assert await ws.recv() == "é" * 40
            await ws.send("é" * 15)  # 30 more bytes: 110 in all, over 100
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
        assert (info.value.code, info.value.reason) == (1008, BYTE_RATE_EXCEEDED)


async def test_ping_flood_gets_bounded_pongs_and_the_connection_stays_up() -> None:
    clock = FakeClock()
    async with (
        serve(
            echo,
            "127.0.0.1",
            0,
            ping_interval=None,
            ping_limiter=lambda: PingFloodGuard(1, burst=2, clock=clock),
        ) as server,
        raw_client(port_of(server)) as (reader, writer),
    ):
        for i in range(10):
            write_frame(writer, Opcode.PING.value, b"%d" % i, mask=True)
        write_frame(writer, Opcode.TEXT.value, b"still here", mask=True)
        frames = []
        while True:
            frame = await asyncio.wait_for(read_frame(reader), 5)
            frames.append(frame)
            if frame[0] == Opcode.TEXT.value:
                break
        # Two Pongs (the burst) for ten Pings, then the echo.
        assert frames == [
            (Opcode.PONG.value, b"0", True),
            (Opcode.PONG.value, b"1", True),
            (Opcode.TEXT.value, b"still here", True),
        ]
        clock.now += 1.0  # one Ping's worth of time
        write_frame(writer, Opcode.PING.value, b"later", mask=True)
        assert await asyncio.wait_for(read_frame(reader), 5) == (Opcode.PONG.value, b"later", True)


async def test_without_a_ping_limiter_every_ping_is_answered() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=None) as server,
        raw_client(port_of(server)) as (reader, writer),
    ):
        for i in range(5):
            write_frame(writer, Opcode.PING.value, b"%d" % i, mask=True)
        pongs = [await asyncio.wait_for(read_frame(reader), 5) for _ in range(5)]
        assert pongs == [(Opcode.PONG.value, b"%d" % i, True) for i in range(5)]
