"""The asyncio connection's hot paths: recv() resumed inside data_received(), send() in one write.

Most of these drive a connection directly, with an in-memory transport, so
that the order of events is exact rather than left to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.asyncio.raw import running
from tests.helpers import ConnectionPair, flush
from wsskit.asyncio.connection import Connection, _MessageWaiter
from wsskit.exceptions import ConnectionClosedOK, InvalidState
from wsskit.protocol.events import BytesMessage, Close, TextMessage

TIMEOUT = 10


class MemoryTransport(asyncio.Transport):
    """Keeps what is written; reading and writing flags as asyncio's transports have them."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.written.append(b"".join(bytes(chunk) for chunk in list_of_data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _open_connection(**options: Any) -> tuple[Connection, ConnectionPair, MemoryTransport]:
    # A server-side asyncio connection over an open core; the pair's client
    # core makes the frames it receives.
    pair = ConnectionPair()
    settings: dict[str, Any] = {
        "ping_interval": None,
        "ping_timeout": None,
        "close_timeout": 1,
        "max_queue": 16,
        "write_limit": 2**16,
        "logger": logging.getLogger("tests.fast_paths"),
        **options,
    }
    connection = Connection(pair.server, **settings)
    transport = MemoryTransport()
    connection.connection_made(transport)
    return connection, pair, transport


def _from_client(pair: ConnectionPair, *messages: str | bytes) -> bytes:
    for message in messages:
        pair.client.send(TextMessage(message) if isinstance(message, str) else BytesMessage(message))
    return flush(pair.client)


async def test_a_waiting_recv_runs_inside_data_received() -> None:
    connection, pair, _ = _open_connection()
    got: list[object] = []

    async def reader() -> None:
        while True:
            got.append(await connection.recv())

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # the task now waits in recv()
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[list[object]] = loop.create_future()

    def deliver() -> None:  # a loop callback, as the transport's read is
        connection.data_received(_from_client(pair, "one", b"two"))
        seen.set_result(list(got))

    loop.call_soon(deliver)
    # Both messages were read before data_received() returned.
    assert await asyncio.wait_for(seen, TIMEOUT) == ["one", b"two"]
    # Called from inside a task (the test's), the wake-up waits for the loop:
    # asyncio cannot run a task inside another one.
    connection.data_received(_from_client(pair, "three"))
    assert got == ["one", b"two"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got == ["one", b"two", "three"]
    task.cancel()


async def test_the_task_resumed_in_place_may_send_and_wait_again() -> None:
    connection, pair, transport = _open_connection()

    async def echo() -> None:
        async for message in connection:
            await connection.send(message)

    task = asyncio.create_task(echo())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    for round_trip in range(3):
        done: asyncio.Future[None] = loop.create_future()

        def deliver(n: int = round_trip, done: asyncio.Future[None] = done) -> None:
            connection.data_received(_from_client(pair, f"m{n}"))
            done.set_result(None)

        loop.call_soon(deliver)
        await asyncio.wait_for(done, TIMEOUT)
        # The echo was written before data_received() returned.
        pair.client.receive_data(transport.written.pop())
        assert pair.client.events_received() == [TextMessage(f"m{round_trip}")]
    task.cancel()


async def test_an_error_in_the_resumed_task_stays_in_the_task() -> None:
    connection, pair, _ = _open_connection()

    async def fails() -> None:
        await connection.recv()
        raise RuntimeError("the handler's own bug")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[None] = loop.create_future()
    loop.call_soon(lambda: (connection.data_received(_from_client(pair, "x")), delivered.set_result(None)))
    await asyncio.wait_for(delivered, TIMEOUT)
    with pytest.raises(RuntimeError, match="own bug"):
        await task
    assert connection.state.name == "OPEN"  # the connection did not see the error


async def test_recv_cancelled_or_timed_out_loses_nothing() -> None:
    connection, pair, _ = _open_connection()
    with pytest.raises(asyncio.TimeoutError):  # TimeoutError itself from Python 3.11 on
        await asyncio.wait_for(connection.recv(), 0.01)
    waiting = asyncio.create_task(connection.recv())
    await asyncio.sleep(0)
    waiting.cancel("no longer needed")
    with pytest.raises(asyncio.CancelledError):
        await waiting
    connection.data_received(_from_client(pair, "kept"))
    assert await asyncio.wait_for(connection.recv(), TIMEOUT) == "kept"


async def test_only_one_task_waits_in_recv() -> None:
    connection, pair, _ = _open_connection()
    first = asyncio.create_task(connection.recv())
    await asyncio.sleep(0)
    with pytest.raises(InvalidState):
        await connection.recv()
    connection.data_received(_from_client(pair, "for the first"))
    assert await asyncio.wait_for(first, TIMEOUT) == "for the first"


async def test_close_wakes_a_waiting_recv() -> None:
    connection, pair, _ = _open_connection()
    waiting = asyncio.create_task(connection.recv())
    await asyncio.sleep(0)
    pair.client.send(Close(1000, "bye"))
    connection.data_received(flush(pair.client))
    with pytest.raises(ConnectionClosedOK):
        await asyncio.wait_for(waiting, TIMEOUT)


async def test_a_normal_close_ends_async_for_after_the_last_message() -> None:
    connection, pair, _ = _open_connection()
    iterating = asyncio.create_task(_collect(connection))
    await asyncio.sleep(0)
    pair.client.send(TextMessage("last"))
    pair.client.send(Close(1000, "bye"))
    connection.data_received(flush(pair.client))
    assert await asyncio.wait_for(iterating, TIMEOUT) == ["last"]


async def _collect(connection: Connection) -> list[object]:
    return [message async for message in connection]


async def test_messages_already_queued_need_no_wait() -> None:
    connection, pair, _ = _open_connection()
    connection.data_received(_from_client(pair, "a", "b", b"c"))
    assert [await connection.recv(), await connection.__anext__(), await connection.recv()] == [
        "a",
        "b",
        b"c",
    ]


async def test_send_writes_one_small_message_in_one_write() -> None:
    connection, _, transport = _open_connection()
    await connection.send(b"\x00" * 100)
    await connection.send("é")
    assert transport.written == [b"\x82\x64" + b"\x00" * 100, b"\x81\x02" + "é".encode()]


async def test_the_waiter_follows_the_future_protocol() -> None:
    loop = asyncio.get_running_loop()
    waiter = _MessageWaiter(loop)
    assert asyncio.isfuture(waiter) and waiter.get_loop() is loop and not waiter.done()
    with pytest.raises(asyncio.InvalidStateError):
        waiter.result()
    calls: list[str] = []
    waiter.add_done_callback(lambda _: calls.append("kept"))
    waiter.add_done_callback(dropped := lambda _: calls.append("dropped"))
    assert waiter.remove_done_callback(dropped) == 1
    assert waiter.cancel("why") and not waiter.cancel()
    assert waiter.cancelled() and waiter.done()
    with pytest.raises(asyncio.CancelledError, match="why"):
        waiter.result()
    with pytest.raises(asyncio.CancelledError):
        waiter.exception()
    await asyncio.sleep(0)
    assert calls == ["kept"]  # callbacks run from the loop, as a Future's do
    waiter.add_done_callback(lambda _: calls.append("late"))
    await asyncio.sleep(0)
    assert calls == ["kept", "late"]
    done = _MessageWaiter(loop)
    done.wake()
    assert done.done() and done.result() is None and done.exception() is None
    assert "done" in repr(done)
    assert await done is None


async def test_the_waiter_refuses_a_bare_await() -> None:
    waiter = _MessageWaiter(asyncio.get_running_loop())
    steps = waiter.__await__()
    assert next(steps) is waiter  # what a Task sees
    with pytest.raises(RuntimeError, match="await wasn't used with future"):
        next(steps)


async def test_echo_over_a_real_socket_many_times() -> None:
    async with running() as (_, ws):
        for i in range(200):
            await ws.send(f"message {i}")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"message {i}"
        await ws.send(b"\x01" * 70000)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x01" * 70000
