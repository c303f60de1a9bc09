"""Reconnecting: ``async for ws in connect(uri, reconnect=...)`` against real wss:// servers.

Waiting goes through the client's ``_sleep`` hook, which records each delay
and returns at once (or restarts the server first): the tests check the
delays without spending them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest

from tests.asyncio.raw import echo, port_of
from wsskit.asyncio import ClientConnection, ServerConnection, connect, serve
from wsskit.asyncio.client import _Connect
from wsskit.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.headers import Headers
from wsskit.reconnect import GiveUp, ReconnectPolicy

TIMEOUT = 10
QUIET = {"ping_interval": None, "close_timeout": 2}


class Recorder:
    """The ``_sleep`` and ``on_reconnecting`` hooks: what the client waited, and why.

    ``before_sleep`` runs at each wait, with the number of the wait (1, 2...).
    """

    def __init__(self, before_sleep: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.sleeps: list[float] = []
        self.events: list[tuple[int, float, BaseException]] = []
        self._before_sleep = before_sleep

    def on_reconnecting(self, attempt: int, delay: float, failure: BaseException) -> None:
        self.events.append((attempt, delay, failure))

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        # A client that would reconnect forever fails the test instead of hanging it.
        assert len(self.sleeps) <= 20, "reconnecting without end"
        if self._before_sleep is not None:
            await self._before_sleep(len(self.sleeps))

    def attach(self, connecting: _Connect, *, jitter: Callable[[], float] | None = None) -> _Connect:
        connecting._sleep = self.sleep
        if jitter is not None:
            connecting._random = jitter
        return connecting


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reconnects_when_the_server_restarts(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    generations: list[int] = []  # the server generation of each accepted connection
    generation = 1

    async def handler(ws: ServerConnection) -> None:
        generations.append(generation)
        await echo(ws)

    server = await serve(handler, "127.0.0.1", 0, ssl=server_ssl, **QUIET)
    port = port_of(server)
    servers = [server]

    async def restart_on_second_wait(count: int) -> None:
        # The first attempt meets a closed port; the server is back before the second.
        nonlocal generation
        if count == 2:
            generation = 2
            servers.append(await serve(handler, "127.0.0.1", port, ssl=server_ssl, **QUIET))

    recorder = Recorder(restart_on_second_wait)
    policy = ReconnectPolicy(first_delay=5, initial_delay=1, stable_after=0)
    connecting = connect(
        f"wss://127.0.0.1:{port}/",
        ssl=client_ssl,
        reconnect=policy,
        on_reconnecting=recorder.on_reconnecting,
        **QUIET,
    )
    echoed = []
    try:
        async for ws in recorder.attach(connecting):
            await ws.send(f"hello {len(echoed)}")
            echoed.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if len(echoed) == 2:
                break
            await server.close()  # going away: 1001
            async for _ in ws:
                pytest.fail("no message expected")
    finally:
        for each in servers:
            await each.close()

    assert echoed == ["hello 0", "hello 1"]
    assert generations == [1, 2]
    [(first, first_delay, lost), (second, second_delay, refused)] = recorder.events
    assert (first, second) == (1, 2)
    assert isinstance(lost, ConnectionClosedOK) and lost.code == 1001
    assert isinstance(refused, ConnectionRefusedError)
    assert recorder.sleeps == [first_delay, second_delay]
    assert 0 <= first_delay <= 5 and 0 <= second_delay <= 1


async def test_delays_are_jittered_capped_and_give_up_after_max_attempts(
    client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    policy = ReconnectPolicy(first_delay=5, initial_delay=1, factor=2, max_delay=3, max_attempts=5)
    recorder = Recorder()
    connecting = connect(
        f"wss://127.0.0.1:{free_port()}/",
        ssl=client_ssl,
        reconnect=policy,
        on_reconnecting=recorder.on_reconnecting,
    )
    with caplog.at_level(logging.INFO, logger="wsskit.client"), pytest.raises(GiveUp) as caught:
        async for _ in recorder.attach(connecting):
            pytest.fail("nothing listens there")

    assert caught.value.attempts == 5
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert [attempt for attempt, _, _ in recorder.events] == [1, 2, 3, 4]
    delays = recorder.sleeps
    assert delays == [delay for _, delay, _ in recorder.events]
    # Full jitter: each delay is random below its ceiling (5, then 1, 2, 3 capped).
    for attempt, delay in enumerate(delays, start=1):
        assert 0 <= delay <= policy.ceiling(attempt)
    assert [policy.ceiling(n) for n in range(1, 5)] == [5, 1, 2, 3]
    assert len(set(delays)) == len(delays)
    logged = [record for record in caplog.records if "reconnecting" in record.getMessage()]
    assert len(logged) == 4 and all(record.levelno == logging.INFO for record in logged)
    assert "attempt 1" in logged[0].getMessage()


async def test_the_jitter_comes_from_the_injected_source(client_ssl: ssl.SSLContext) -> None:
    policy = ReconnectPolicy(first_delay=5, initial_delay=1, factor=2, max_delay=3, max_attempts=4)
    recorder = Recorder()
    connecting = connect(f"wss://127.0.0.1:{free_port()}/", ssl=client_ssl, reconnect=policy)
    with pytest.raises(GiveUp):
        async for _ in recorder.attach(connecting, jitter=random.Random(7).random):
            pass
    draws = random.Random(7)
    assert recorder.sleeps == [draws.random() * policy.ceiling(n) for n in (1, 2, 3)]


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_credential_is_not_retried(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, status: int
) -> None:
    requests: list[Request] = []

    def refuse(ws: ServerConnection, request: Request) -> Reject:
        requests.append(request)
        return Reject(status, Headers([("WWW-Authenticate", 'Bearer realm="test"')]))

    recorder = Recorder()
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, process_request=refuse, **QUIET) as server:
        connecting = connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, reconnect=True)
        with pytest.raises(InvalidStatus) as caught:
            async for _ in recorder.attach(connecting):
                pytest.fail("the server refuses")
    assert caught.value.response.status == status
    assert len(requests) == 1 and recorder.sleeps == []


async def test_a_certificate_error_is_not_retried(server_ssl: ssl.SSLContext) -> None:
    recorder = Recorder()
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        # The default context does not trust the test CA.
        connecting = connect(f"wss://127.0.0.1:{port_of(server)}/", reconnect=True)
        with pytest.raises(ssl.SSLCertVerificationError):
            async for _ in recorder.attach(connecting):
                pytest.fail("the certificate does not verify")
    assert recorder.sleeps == []


async def test_503_with_retry_after_is_waited_for(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    answers = 0

    def overloaded_once(ws: ServerConnection, request: Request) -> Reject | None:
        nonlocal answers
        answers += 1
        if answers == 1:
            return Reject(503, Headers([("Retry-After", "7")]))
        return None

    recorder = Recorder()
    policy = ReconnectPolicy(first_delay=5, max_delay=60)
    async with serve(
        echo, "127.0.0.1", 0, ssl=server_ssl, process_request=overloaded_once, **QUIET
    ) as server:
        connecting = connect(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            reconnect=policy,
            on_reconnecting=recorder.on_reconnecting,
            **QUIET,
        )
        # No jitter at all: whatever is waited comes from Retry-After.
        async for ws in recorder.attach(connecting, jitter=lambda: 0.0):
            await ws.send("after the wait")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after the wait"
            break
    assert recorder.sleeps == [7.0]
    [(attempt, _, failure)] = recorder.events
    assert attempt == 1 and isinstance(failure, InvalidStatus) and failure.response.status == 503
    assert answers == 2


@pytest.mark.parametrize(("code", "again"), [(1000, False), (1008, False), (1011, True), (1012, True)])
async def test_the_close_code_decides(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, code: int, again: bool
) -> None:
    async def close_with_code(ws: ServerConnection) -> None:
        await ws.close(code, "bye")

    recorder = Recorder()
    opened = 0
    async with serve(close_with_code, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        connecting = connect(
            f"wss://127.0.0.1:{port_of(server)}/",
            ssl=client_ssl,
            reconnect=ReconnectPolicy(stable_after=0),
            **QUIET,
        )
        async for ws in recorder.attach(connecting):
            opened += 1
            if opened == 3:
                break
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert caught.value.code == code
    assert opened == (3 if again else 1)
    assert len(recorder.sleeps) == (2 if again else 0)


async def test_connections_that_die_at_once_count_as_failures(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def restart(ws: ServerConnection) -> None:
        await ws.close(1012, "service restart")

    recorder = Recorder()
    opened = 0
    policy = ReconnectPolicy(stable_after=60, max_attempts=3)
    async with serve(restart, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        connecting = connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, reconnect=policy, **QUIET)
        with pytest.raises(GiveUp) as caught:
            async for ws in recorder.attach(connecting):
                opened += 1
                try:
                    async for _ in ws:
                        pass
                except ConnectionClosedError:
                    continue
    # Each connection lived less than stable_after: three in a row and done.
    assert opened == 3 and caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, ConnectionClosedError) and caught.value.__cause__.code == 1012
    assert len(recorder.sleeps) == 2


async def test_a_local_close_ends_the_loop(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    codes: asyncio.Queue[int | None] = asyncio.Queue()

    async def record(ws: ServerConnection) -> None:
        await echo(ws)
        codes.put_nowait(ws.close_code)

    recorder = Recorder()
    opened = 0
    async with serve(record, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        # close() here ends the loop even with a code the policy would retry.
        async for ws in recorder.attach(connect(uri, ssl=client_ssl, reconnect=True, **QUIET)):
            opened += 1
            await ws.close(1001, "leaving")

        # A body that returns with the connection open ends it too, with 1000.
        async def leave_it_open() -> ClientConnection:
            nonlocal opened
            async for ws in recorder.attach(connect(uri, ssl=client_ssl, reconnect=True, **QUIET)):
                opened += 1
                left_open = ws
            return left_open

        left_open = await asyncio.wait_for(leave_it_open(), TIMEOUT)
        assert left_open.close_code == 1000
        # What the server saw: the client's codes.
        assert [await asyncio.wait_for(codes.get(), TIMEOUT) for _ in range(2)] == [1001, 1000]
    assert opened == 2 and recorder.sleeps == []


async def test_leaving_the_loop_closes_the_connection(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        async for ws in connect(
            f"wss://127.0.0.1:{port_of(server)}/", ssl=client_ssl, reconnect=True, **QUIET
        ):
            left = ws
            break
        await asyncio.wait_for(left.wait_closed(), TIMEOUT)
        assert left.close_code == 1000


async def test_without_reconnect_iteration_yields_one_connection(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def restart(ws: ServerConnection) -> None:
        await ws.close(1012)

    opened = 0
    async with serve(restart, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        async for ws in connect(uri, ssl=client_ssl, **QUIET):
            opened += 1
            await ws.wait_closed()
        assert opened == 1 and ws.close_code == 1012
        # Awaiting and async with never reconnect, with or without the option.
        ws = await connect(uri, ssl=client_ssl, reconnect=True, **QUIET)
        await ws.wait_closed()
        async with connect(uri, ssl=client_ssl, reconnect=True, **QUIET) as ws:
            await ws.wait_closed()
        assert ws.close_code == 1012


async def test_an_async_hook_is_awaited(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    seen: list[tuple[int, float, type[BaseException]]] = []

    async def on_reconnecting(attempt: int, delay: float, failure: BaseException) -> None:
        await asyncio.sleep(0)
        seen.append((attempt, delay, type(failure)))

    recorder = Recorder()
    connecting = connect(
        f"wss://127.0.0.1:{free_port()}/",
        ssl=client_ssl,
        reconnect=ReconnectPolicy(max_attempts=3),
        on_reconnecting=on_reconnecting,
    )
    with pytest.raises(GiveUp):
        async for _ in recorder.attach(connecting, jitter=lambda: 0.5):
            pass
    assert seen == [(1, 2.5, ConnectionRefusedError), (2, 0.5, ConnectionRefusedError)]


def test_reconnect_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        connect("wss://example.com/", reconnect="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        connect("wss://example.com/", reconnect=True, on_reconnecting=42)  # type: ignore[arg-type]
