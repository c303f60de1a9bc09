"""The asyncio connection over real sockets: messages, fragments, limits, closing, pings, flow control."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.asyncio.raw import (
    accept_upgrade,
    port_of,
    random_bytes,
    raw_client,
    raw_server,
    read_frame,
    running,
    write_frame,
)
from wsskit.asyncio import ClientConnection, ServerConnection, connect, serve
from wsskit.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    LocalProtocolError,
)
from wsskit.protocol.connection import State
from wsskit.protocol.frames import encode_frame

TIMEOUT = 10  # a bound on waits that should end at once; never reached when things work

PING, PONG, CLOSE, TEXT, BINARY, CONT = 0x9, 0xA, 0x8, 0x1, 0x2, 0x0


def _state(ws: ClientConnection) -> State:
    # Read afresh: mypy would narrow ws.state from an earlier assertion.
    return ws.state


def _close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


class Recorder:
    """A handler that records what it receives and how its connection ended."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.connection: ServerConnection | None = None

    async def __call__(self, ws: ServerConnection) -> None:
        self.connection = ws
        try:
            while True:
                self.messages.append(await ws.recv())
        except ConnectionClosed as exc:
            self.ended.set_result(exc)

    async def closed(self) -> ConnectionClosed:
        exc = await asyncio.wait_for(asyncio.shield(self.ended), TIMEOUT)
        assert isinstance(exc, ConnectionClosed)
        return exc


# -- messages -----------------------------------------------------------------------------


async def test_text_and_binary_round_trip() -> None:
    async with running() as (_, ws):
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send(bytearray(b"ba"))
        assert await ws.recv() == b"ba"
        await ws.send(memoryview(b"mv"))
        received = await ws.recv()
        assert received == b"mv" and type(received) is bytes
        await ws.send("")
        assert await ws.recv() == ""


async def test_many_messages_keep_their_order() -> None:
    async with running(server={"max_queue": 4}) as (_, ws):
        for i in range(200):
            await ws.send(str(i))
        assert [await ws.recv() for _ in range(200)] == [str(i) for i in range(200)]


async def test_fragmented_iterable_goes_as_one_fragmented_message() -> None:
    frames: list[tuple[int, bytes, bool]] = []
    done = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        while not frames or not frames[-1][2]:
            frames.append(await read_frame(reader))
        done.set_result(None)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None, close_timeout=1)
        await ws.send(["ab", "cd", "ef"])
        await asyncio.wait_for(done, TIMEOUT)
        ws.transport.abort()
    assert frames == [(TEXT, b"ab", False), (CONT, b"cd", False), (CONT, b"ef", True)]


async def test_fragmented_messages_are_reassembled() -> None:
    async def fragments() -> AsyncIterator[bytes | bytearray | memoryview]:
        yield b"one "
        await asyncio.sleep(0)
        yield bytearray(b"two ")
        yield memoryview(b"three")

    async with running() as (_, ws):
        await ws.send(["a", "b", "c"])
        assert await ws.recv() == "abc"
        await ws.send([b"x", b"y"])
        assert await ws.recv() == b"xy"
        await ws.send(fragments())
        assert await ws.recv() == b"one two three"
        await ws.send(["single"])
        assert await ws.recv() == "single"


async def test_empty_iterables_send_nothing() -> None:
    async def nothing() -> AsyncIterator[str]:
        return
        yield  # pragma: no cover

    async with running() as (_, ws):
        await ws.send([])
        await ws.send(nothing())
        await ws.send("after")
        assert await ws.recv() == "after"


async def test_other_sends_wait_for_a_fragmented_message() -> None:
    release = asyncio.get_running_loop().create_future()

    async def slow() -> AsyncIterator[str]:
        yield "first "
        await release
        yield "half"

    async with running() as (_, ws):
        streaming = asyncio.create_task(ws.send(slow()))
        other = asyncio.create_task(ws.send("other"))
        await asyncio.sleep(0)  # let both tasks start; the second must queue behind the first
        assert not other.done()
        release.set_result(None)
        await asyncio.wait_for(asyncio.gather(streaming, other), TIMEOUT)
        assert await ws.recv() == "first half"
        assert await ws.recv() == "other"


async def test_fragmented_sends_started_together_do_not_interleave() -> None:
    # Each source waits before its first fragment, so both sends pass the
    # turn check before either claims the connection.
    release = asyncio.get_running_loop().create_future()

    async def first() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield "a1 "
        await release
        yield "a2"

    async def second() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        yield "b1 "
        yield "b2"

    async with running() as (_, ws):
        one = asyncio.create_task(ws.send(first()))
        two = asyncio.create_task(ws.send(second()))
        for _ in range(5):
            await asyncio.sleep(0)
        release.set_result(None)
        await asyncio.wait_for(asyncio.gather(one, two), TIMEOUT)
        assert {await ws.recv(), await ws.recv()} == {"a1 a2", "b1 b2"}
        assert ws.state is State.OPEN


async def test_a_send_woken_from_a_full_buffer_waits_for_a_fragmented_message() -> None:
    # A send that waited for the write buffer to drain must look again for
    # a fragmented message that began while it was waking up.
    loop = asyncio.get_running_loop()
    release = loop.create_future()

    async def slow() -> AsyncIterator[str]:
        yield "f1 "
        await release
        yield "f2"

    async with running() as (_, ws):
        ws.pause_writing()  # as asyncio does when the buffer is over write_limit
        whole = asyncio.create_task(ws.send("whole"))
        await asyncio.sleep(0)  # waits for the buffer to drain
        go = loop.create_future()

        async def fragmented() -> None:
            await go
            await ws.send(slow())

        streaming = asyncio.create_task(fragmented())
        await asyncio.sleep(0)
        go.set_result(None)  # the fragmented send runs first...
        ws.resume_writing()  # ...then the woken whole send
        for _ in range(5):
            await asyncio.sleep(0)
        assert not whole.done()
        release.set_result(None)
        await asyncio.wait_for(asyncio.gather(whole, streaming), TIMEOUT)
        assert await ws.recv() == "f1 f2"
        assert await ws.recv() == "whole"


async def test_mixed_fragments_fail_the_connection() -> None:
    recorder = Recorder()
    async with running(recorder) as (_, ws):
        with pytest.raises(TypeError):
            await ws.send(["text", "more", b"bytes"])  # "text" is out when b"bytes" shows up
        closed = await recorder.closed()
        assert isinstance(closed, ConnectionClosedError) and closed.code == 1011
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011


async def test_a_bad_fragment_before_anything_was_sent_leaves_the_connection_open() -> None:
    async with running() as (_, ws):
        with pytest.raises(TypeError):
            await ws.send([42])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            await ws.send(["text", b"bytes"])  # the first fragment waits for the second: nothing sent
        await ws.send("still open")
        assert await ws.recv() == "still open"


@pytest.mark.parametrize("message", [{"a": "b"}, 42, None])
async def test_send_refuses_other_types(message: Any) -> None:
    async with running() as (_, ws):
        with pytest.raises(TypeError):
            await ws.send(message)
        assert ws.state is State.OPEN


# -- size limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_messages_up_to_max_size_pass(compression: str | None) -> None:
    data = random_bytes(2**16)
    async with running(
        server={"max_size": 2**16, "compression": compression},
        client={"max_size": 2**16, "compression": compression},
    ) as (_, ws):
        await ws.send(data)
        assert await ws.recv() == data
        await ws.send("é" * (2**15))
        assert await ws.recv() == "é" * (2**15)


async def test_max_size_exceeded_error_codes_on_both_sides() -> None:
    recorder = Recorder()
    async with running(recorder, server={"max_size": 1000}) as (_, ws):
        await ws.send(random_bytes(1000))
        await ws.send(random_bytes(1001))
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1009
        assert ws.close_code == 1009
        server_side = await recorder.closed()
        assert isinstance(server_side, ConnectionClosedError) and server_side.code == 1009
        assert len(recorder.messages) == 1


async def test_max_size_none_lifts_the_limit() -> None:
    data = random_bytes(2**20 + 1)
    async with running(server={"max_size": None}, client={"max_size": None, "compression": None}) as (_, ws):
        await ws.send(data)
        assert await ws.recv() == data


# -- closing ----------------------------------------------------------------------------------


async def test_client_close_code_and_reason_reach_the_server() -> None:
    recorder = Recorder()
    async with running(recorder) as (_, ws):
        await ws.close(4000, "bye")
        closed = await recorder.closed()
        assert isinstance(closed, ConnectionClosedError)
        assert (closed.code, closed.reason) == (4000, "bye")
        assert ws.state is State.CLOSED
        assert ws.close_code == 4000  # the server echoes the code


async def test_server_close_code_and_reason_reach_the_client() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(4001, "server says bye")

    async with running(handler) as (_, ws):
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4001, "server says bye")
        assert (ws.close_code, ws.close_reason) == (4001, "server says bye")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_normal_close_ends_async_for_quietly() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.send("two")

    async with running(handler) as (_, ws):
        received = [message async for message in ws]
        assert received == ["one", "two"]
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("too late")
        with pytest.raises(ConnectionClosedOK):
            ws.ping()


async def test_async_for_raises_on_an_error_close() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1011, "broken")

    async with running(handler) as (_, ws):
        with pytest.raises(ConnectionClosedError):
            async for _ in ws:
                pass


async def test_close_is_idempotent_and_checks_its_code() -> None:
    async with running() as (_, ws):
        with pytest.raises(LocalProtocolError):
            await ws.close(1006)
        with pytest.raises(LocalProtocolError):
            await ws.close(1000, "x" * 124)
        assert ws.state is State.OPEN
        await ws.close()
        await ws.close()
        assert _state(ws) is State.CLOSED


async def test_send_while_closing_raises_with_our_code() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await reader.read()  # never answers the Close

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, close_timeout=0.2)
        closing = asyncio.create_task(ws.close(1000, "done"))
        await asyncio.sleep(0)
        assert ws.state is State.CLOSING
        with pytest.raises(ConnectionClosedOK):
            await ws.send("late")
        await asyncio.wait_for(closing, TIMEOUT)
    # The peer never answered: the close timed out and the transport was aborted.
    assert _state(ws) is State.CLOSED
    assert ws.close_code == 1006
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.code == 1006


async def test_client_waits_for_the_server_to_close_tcp_then_aborts() -> None:
    answered = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        opcode, payload, _ = await read_frame(reader)
        assert opcode == CLOSE
        write_frame(writer, CLOSE, payload, mask=False)
        answered.set_result(None)
        await reader.read()  # keeps TCP open

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, close_timeout=0.2)
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert answered.done()
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_peer_dropping_the_connection_gives_1006() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        writer.transport.abort()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None)
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1006
        assert (ws.close_code, ws.close_reason) == (1006, "")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_messages_received_before_the_close_are_still_delivered() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        write_frame(writer, TEXT, b"last words", mask=False)
        write_frame(writer, CLOSE, _close_payload(1000), mask=False)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, close_timeout=0.2)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert await ws.recv() == "last words"
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_concurrent_recv_is_refused() -> None:
    async with running() as (_, ws):
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(InvalidState):
            await ws.recv()
        assert isinstance(InvalidState("x"), RuntimeError)
        await ws.send("for the first")
        assert await asyncio.wait_for(first, TIMEOUT) == "for the first"


async def test_cancelled_recv_loses_no_message() -> None:
    async with running() as (_, ws):
        waiting = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await ws.send("kept")
        assert await ws.recv() == "kept"


# -- attributes -------------------------------------------------------------------------------


async def test_attributes() -> None:
    async with running() as (server, ws):
        assert ws.state is State.OPEN
        assert ws.remote_address[:2] == ("127.0.0.1", port_of(server))
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.ssl_object is None
        assert ws.close_code is None and ws.close_reason is None
        assert ws.response is not None and ws.response.headers["Upgrade"].lower() == "websocket"
        async with connect(f"ws://127.0.0.1:{port_of(server)}", ping_interval=None) as other:
            assert other.id != ws.id
        assert "ClientConnection" in repr(ws)
        assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")


# -- pings ------------------------------------------------------------------------------------


async def test_ping_resolves_to_the_latency() -> None:
    async with running() as (_, ws):
        latency = await asyncio.wait_for(ws.ping(), TIMEOUT)
        assert latency >= 0 and ws.latency == latency
        assert await asyncio.wait_for(ws.ping("text payload"), TIMEOUT) >= 0
        waiter = ws.ping(b"same")
        with pytest.raises(InvalidState):
            ws.ping(b"same")
        await asyncio.wait_for(waiter, TIMEOUT)
        with pytest.raises(LocalProtocolError):
            ws.ping(b"x" * 126)
        await ws.pong(b"unsolicited")
        await ws.send("still fine")
        assert await ws.recv() == "still fine"


async def test_a_pong_answers_every_earlier_ping() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        assert (await read_frame(reader))[:2] == (PING, b"1")
        assert (await read_frame(reader))[:2] == (PING, b"2")
        write_frame(writer, PONG, b"2", mask=False)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, close_timeout=0.2)
        first, second = ws.ping(b"1"), ws.ping(b"2")
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        ws.transport.abort()


async def test_pending_pings_fail_when_the_connection_closes() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        assert (await read_frame(reader))[0] == PING
        writer.transport.abort()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None)
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.ping(), TIMEOUT)


async def test_keepalive_pings_a_healthy_peer() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        for _ in range(2):
            opcode, payload, _ = await read_frame(reader)
            assert opcode == PING and len(payload) == 4
            write_frame(writer, PONG, payload, mask=False)
        write_frame(writer, TEXT, b"after two pongs", mask=False)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=0.01, ping_timeout=5, close_timeout=0.2)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after two pongs"
        assert ws.latency > 0
        ws.transport.abort()


async def test_keepalive_timeout_fails_the_client_with_1011() -> None:
    close_frame = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        while True:  # reads, but never answers a ping
            opcode, payload, _ = await read_frame(reader)
            if opcode == CLOSE:
                close_frame.set_result(payload)
                await reader.read()
                return

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=0.01, ping_timeout=0.05, close_timeout=0.2)
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1011
        assert await asyncio.wait_for(close_frame, TIMEOUT) == _close_payload(1011, "keepalive ping timeout")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_keepalive_timeout_fails_the_server_side_with_1011() -> None:
    recorder = Recorder()
    async with (
        serve(recorder, "127.0.0.1", 0, ping_interval=0.01, ping_timeout=0.05, close_timeout=0.2) as server,
        raw_client(port_of(server)) as (reader, _),
    ):
        closed = await recorder.closed()
        assert isinstance(closed, ConnectionClosedError) and closed.code == 1011
        frames: list[tuple[int, bytes, bool]] = []
        while not frames or frames[-1][0] != CLOSE:
            frames.append(await asyncio.wait_for(read_frame(reader), TIMEOUT))
        assert frames[0][0] == PING
        assert frames[-1][1] == _close_payload(1011, "keepalive ping timeout")


# -- flow control ------------------------------------------------------------------------------


async def test_send_blocks_when_the_peer_never_reads() -> None:
    """A client that never reads: the server's send() ends up waiting; memory stays bounded."""
    chunk = random_bytes(2**16)
    outcome: asyncio.Future[tuple[int, int, int]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        sent = 0
        high_water = 0
        try:
            for _ in range(2000):  # 128 MiB at most: far beyond any socket buffer
                await asyncio.wait_for(ws.send(chunk), 0.5)
                sent += 1
                # send() returns only once the buffer is under the write limit.
                high_water = max(high_water, ws.transport.get_write_buffer_size())
        except asyncio.TimeoutError:
            outcome.set_result((sent, high_water, ws.transport.get_write_buffer_size()))
            ws.transport.abort()

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None, write_limit=2**15) as server,
        raw_client(port_of(server)),
    ):
        sent, high_water, buffered = await asyncio.wait_for(outcome, 60)
    assert sent < 2000
    assert high_water <= 2**15
    assert buffered <= 2**15 + len(chunk) + 14


async def test_reading_pauses_when_the_handler_does_not_recv() -> None:
    """A handler that does not recv: the server stops reading and the client's send() waits."""
    start_reading = asyncio.get_running_loop().create_future()
    received: list[str | bytes] = []
    state: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        await start_reading
        state["paused"] = ws._reading_paused
        state["queued"] = len(ws._messages)
        async for message in ws:
            received.append(message)

    chunk = random_bytes(2**14)
    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None, max_queue=4) as server,
        connect(
            f"ws://127.0.0.1:{port_of(server)}", ping_interval=None, compression=None, write_limit=2**14
        ) as ws,
    ):
        sent = 0
        with pytest.raises(asyncio.TimeoutError):
            for _ in range(4000):
                await asyncio.wait_for(ws.send(chunk), 0.5)
                sent += 1
        assert sent < 4000
        start_reading.set_result(None)
        await ws.send(b"end")
        await ws.close()
        await asyncio.wait_for(server.close(), TIMEOUT)
    assert state["paused"] is True
    assert 4 <= state["queued"] <= 4 + 2**18 // len(chunk) + 1  # max_queue, plus one read's worth
    # Reading resumed: every message arrived, in order.
    assert received[-1] == b"end" and len(received) >= sent


async def test_client_reading_pauses_when_it_does_not_recv() -> None:
    reached = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        count = 0
        try:
            while True:
                await asyncio.wait_for(ws.send(random_bytes(2**14)), 0.5)
                count += 1
        except asyncio.TimeoutError:
            reached.set_result(count)
        await ws.send("last")

    async with running(handler, server={"compression": None}, client={"max_queue": 2}) as (_, ws):
        count = await asyncio.wait_for(reached, 60)
        assert ws._reading_paused
        assert 2 <= len(ws._messages) <= 2 + 2**18 // 2**14 + 1
        # The send that timed out had written its message: count + 1 of them.
        for _ in range(count + 1):
            assert len(await ws.recv()) == 2**14
        assert await ws.recv() == "last"


async def test_a_ping_flood_from_a_peer_that_does_not_read_stops_reading() -> None:
    """Pongs the peer never reads pile up only so far: then the server stops reading."""
    opened = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        # Small kernel buffers, so that the test needs few pings.
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        opened.set_result(ws)
        await ws.wait_closed()

    frame = b"".join(bytes(part) for part in encode_frame(PING, b"p" * 125, mask=True))
    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None, write_limit=2**12) as server,
        raw_client(port_of(server), rcvbuf=4096) as (_, writer),
    ):
        connection = await asyncio.wait_for(opened, TIMEOUT)
        writer.transport.set_write_buffer_limits(high=2**16)
        with pytest.raises(asyncio.TimeoutError):
            for _ in range(10_000):  # 1.3 MB of pings at most
                writer.write(frame * 100)
                await asyncio.wait_for(writer.drain(), 0.5)
        assert connection._reading_paused
        assert connection.transport.get_write_buffer_size() < 2**16 + 2**13


# -- robustness ---------------------------------------------------------------------------------


async def test_an_internal_error_fails_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "wsskit.client")
    async with running() as (server, ws):

        def broken(data: bytes | bytearray | memoryview) -> None:
            raise RuntimeError("boom")

        ws._core.receive_data = broken  # type: ignore[method-assign]
        await ws.send("trigger")
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert any("internal error" in r.getMessage() for r in caplog.records)
        async with connect(f"ws://127.0.0.1:{port_of(server)}", ping_interval=None) as other:
            await other.send("fine")
            assert await other.recv() == "fine"


async def test_client_connection_type() -> None:
    async with running() as (_, ws):
        assert isinstance(ws, ClientConnection)


async def test_a_blocked_send_raises_when_the_peer_drops() -> None:
    blocked = asyncio.get_running_loop().create_future()
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                sending = asyncio.ensure_future(ws.send(random_bytes(2**16)))
                done, _ = await asyncio.wait({sending}, timeout=0.5)
                if not done:
                    blocked.set_result(None)
                    await sending
        except ConnectionClosed as exc:
            outcome.set_result(exc)

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server,
        raw_client(port_of(server), rcvbuf=4096) as (_, writer),
    ):
        await asyncio.wait_for(blocked, 60)
        writer.transport.abort()
        exc = await asyncio.wait_for(outcome, TIMEOUT)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1006


async def test_messages_after_our_close_beyond_the_queue_are_dropped() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        opcode, payload, _ = await read_frame(reader)
        assert opcode == CLOSE
        for i in range(10):  # sent before it "noticed" our Close
            write_frame(writer, TEXT, str(i).encode(), mask=False)
            await writer.drain()
            await asyncio.sleep(0)  # one loop turn: the client reads it on its own
        write_frame(writer, CLOSE, payload, mask=False)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}", ping_interval=None, max_queue=2, close_timeout=0.1)
        await asyncio.wait_for(ws.close(), TIMEOUT)
        received = []
        with pytest.raises(ConnectionClosedOK):
            while True:
                received.append(await ws.recv())
        assert received[:2] == ["0", "1"] and len(received) < 10
