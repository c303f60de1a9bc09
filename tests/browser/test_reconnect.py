"""wsskit.browser.WebSocket(reconnect=...) against real wss:// servers that go away and come back.

The socket's ``_sleep`` hook records each delay and returns at once (or
restarts the server first), so the delays are checked without being spent;
its ``_random`` hook is a seeded generator, so the jitter is real but the
same on every run.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import Awaitable, Callable

from tests.asyncio.raw import echo, port_of
from tests.browser.test_websocket import QUIET, TIMEOUT, Recorder, closed
from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.browser import CLOSED, CONNECTING, OPEN, ReconnectingEvent, WebSocket
from wsskit.exceptions import ConnectionClosedOK, GiveUp
from wsskit.reconnect import ReconnectPolicy

POLICY = ReconnectPolicy(first_delay=1.0, initial_delay=2.0, factor=2.0)


class Sleeps:
    """The ``_sleep`` hook: records each delay; ``before`` runs at wait number n (1, 2...)."""

    def __init__(self, before: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.delays: list[float] = []
        self._before = before

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        # A socket that would reconnect forever fails the test instead of hanging it.
        assert len(self.delays) <= 10, "reconnecting without end"
        if self._before is not None:
            await self._before(len(self.delays))

    def attach(self, ws: WebSocket, seed: int = 4) -> WebSocket:
        ws._sleep = self
        ws._random = random.Random(seed).random
        return ws


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_reconnects_after_the_server_restarts(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    generations: list[int] = []
    generation = 1

    async def handler(ws: ServerConnection) -> None:
        generations.append(generation)
        await echo(ws)

    server: Server = await serve(handler, "127.0.0.1", 0, ssl=server_ssl, **QUIET)
    port = port_of(server)

    async def restart_on_second_wait(count: int) -> None:
        nonlocal server, generation
        if count == 2:  # the first attempt found nobody listening; now come back
            generation = 2
            server = await serve(handler, "127.0.0.1", port, ssl=server_ssl, **QUIET)

    sleeps = Sleeps(restart_on_second_wait)
    try:
        ws = sleeps.attach(WebSocket(f"wss://localhost:{port}/", ssl=client_ssl, reconnect=POLICY, **QUIET))
        recorder = Recorder(ws)
        reconnecting: list[ReconnectingEvent] = []
        ws.onreconnecting = reconnecting.append
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        ws.send("before")
        assert await recorder.next_message() == "before"

        # The server goes away: its connections get 1001, which is retried.
        server.close()
        await server.wait_closed()
        ws.onopen = lambda event: ws.send("after")
        assert await recorder.next_message() == "after"
        assert ws.ready_state == OPEN
        ws.close(1000)
        event = await closed(ws)
    finally:
        server.close()
        await server.wait_closed()

    assert generations == [1, 2]
    assert recorder.types == ["open", "message", "reconnecting", "reconnecting", "open", "message", "close"]
    # While waiting the socket is CONNECTING again; it never dispatched close meanwhile.
    assert [state for type, state, _ in recorder.seen if type == "reconnecting"] == [CONNECTING, CONNECTING]
    assert [(e.attempt, e.type, e.target) for e in reconnecting] == [
        (1, "reconnecting", ws),
        (2, "reconnecting", ws),
    ]
    first, second = reconnecting
    assert isinstance(first.exception, ConnectionClosedOK) and first.exception.code == 1001
    assert isinstance(second.exception, ConnectionRefusedError)
    # The delays are the ones waited, drawn with jitter under each attempt's ceiling.
    assert sleeps.delays == [first.delay, second.delay]
    assert 0 <= first.delay <= POLICY.ceiling(1) and 0 <= second.delay <= POLICY.ceiling(2)
    assert first.delay != second.delay
    assert (event.code, event.was_clean) == (1000, True)


async def test_gives_up_with_error_then_close(client_ssl: ssl.SSLContext) -> None:
    port = free_port()
    policy = ReconnectPolicy(first_delay=1.0, initial_delay=1.0, max_attempts=3)
    sleeps = Sleeps()
    ws = sleeps.attach(WebSocket(f"wss://localhost:{port}/", ssl=client_ssl, reconnect=policy, **QUIET))
    recorder = Recorder(ws)
    event = await closed(ws)
    assert recorder.types == ["reconnecting", "reconnecting", "error", "close"]
    error = recorder.seen[2][2]
    assert isinstance(error, GiveUp) and error.attempts == 3
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert len(sleeps.delays) == 2 and sleeps.delays[0] != sleeps.delays[1]
    assert (event.code, event.was_clean) == (1006, False)
    assert ws.ready_state == CLOSED


async def test_a_policy_close_is_not_retried(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def refuse_politely(ws: ServerConnection) -> None:
        await ws.close(1008, "policy violation")

    async with serve(refuse_politely, "127.0.0.1", 0, ssl=server_ssl, **QUIET) as server:
        sleeps = Sleeps()
        ws = sleeps.attach(
            WebSocket(f"wss://localhost:{port_of(server)}/", ssl=client_ssl, reconnect=True, **QUIET)
        )
        recorder = Recorder(ws)
        event = await closed(ws)
    assert recorder.types == ["open", "close"]
    assert (event.code, event.reason, event.was_clean) == (1008, "policy violation", True)
    assert sleeps.delays == []


async def test_close_during_the_wait_stops_reconnecting(client_ssl: ssl.SSLContext) -> None:
    port = free_port()
    never = asyncio.Event()
    ws: WebSocket

    async def close_and_wait(count: int) -> None:
        ws.close()
        await never.wait()  # cancelled by close()

    sleeps = Sleeps(close_and_wait)
    ws = sleeps.attach(WebSocket(f"wss://localhost:{port}/", ssl=client_ssl, reconnect=True, **QUIET))
    recorder = Recorder(ws)
    event = await closed(ws)
    # Closed while CONNECTING (waiting to reconnect): error, then close with 1006.
    assert recorder.types == ["reconnecting", "error", "close"]
    assert recorder.seen[1][2] is None
    assert (event.code, event.was_clean) == (1006, False)
    assert len(sleeps.delays) == 1
