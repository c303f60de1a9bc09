"""Graceful drain: how ``wsskit serve`` leaves on SIGTERM without a reconnect storm.

The steps, in order:

1. Readiness turns false at once (``/readyz`` answers 503 ``draining``).
2. After ``delay`` seconds (0 by default; behind a load balancer, a little
   more than its health-check interval times its fall count, so that it
   stops sending new clients here before the port closes), the listening
   socket is closed: new connections are refused by the kernel, and a load
   balancer retries them on another node.
3. Open connections are closed one by one, spread evenly over ``window``
   seconds: channel sessions with 4001 ("server shutting down", which the
   channels protocol lets clients reconnect after, their queued messages
   sent first), every other connection with 1001 ("going away"). Spreading
   them keeps thousands of clients from reconnecting to the other nodes in
   the same instant.
4. When every connection has closed, or ``timeout`` seconds after the
   signal, the drain is over; connections still open then are aborted.

A second signal during a drain (:meth:`Drain.hurry`) closes whatever is
still open at once and waits only a few seconds for the closing handshakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..asyncio.server import Server, ServerConnection
from ..channels.wire import CLOSE_SHUTDOWN
from .health import Health

__all__ = ["DrainPolicy", "Drain"]

log = logging.getLogger("wsskit.app")

# After a second signal: how long the closing handshakes may still take.
_HURRY_GRACE = 3.0
# How often stragglers (connections whose handshake ended after the sweep) are looked for.
_SWEEP_INTERVAL = 0.1


@dataclass(frozen=True)
class DrainPolicy:
    """The timings of a drain, in seconds (see the module's docstring).

    Raises :class:`ValueError` for a negative value or a ``timeout`` of 0.
    """

    delay: float = 0.0
    window: float = 10.0
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if min(self.delay, self.window, self.timeout) < 0 or self.timeout == 0:
            raise ValueError(f"invalid drain timings: {self}")


class Drain:
    """One drain of ``server``: run it once with :meth:`run`.

    ``hub`` is the channel hub whose sessions get 4001 (anything with the
    hub's session set; see :func:`_sessions_by_connection`), ``health`` the
    readiness that turns false.
    """

    def __init__(self, server: Server, hub: Any, health: Health, policy: DrainPolicy) -> None:
        self.server = server
        self.hub = hub
        self.health = health
        self.policy = policy
        self._hurry = asyncio.Event()
        self._asked: set[ServerConnection] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._deadline: float | None = None
        self._sessions: dict[Any, Any] = {}

    def hurry(self) -> None:
        """Close everything now (a second SIGTERM or SIGINT)."""
        if self._hurry.is_set():
            return
        log.warning("second signal: closing every connection now")
        self._hurry.set()
        if self._deadline is not None:
            loop = asyncio.get_running_loop()
            self._deadline = min(self._deadline, loop.time() + _HURRY_GRACE)

    async def run(self) -> None:
        """Drain: readiness off, stop listening, close connections over the window, then return.

        Never raises for a misbehaving client: connections still open at the
        timeout are aborted.
        """
        loop = asyncio.get_running_loop()
        policy = self.policy
        self._deadline = loop.time() + policy.timeout
        if self._hurry.is_set():
            self._deadline = min(self._deadline, loop.time() + _HURRY_GRACE)
        self.health.start_draining()
        if policy.delay and not self._hurry.is_set():
            log.info("draining: not ready; closing the listening socket in %.1f s", policy.delay)
            await self._pause(policy.delay)
        # Stop accepting; the server's own close then waits for every handler.
        closed = self.server.close(close_connections=False)
        await asyncio.sleep(0)  # the close task runs: the listener is closed before we say so
        connections = list(self.server.connections)
        window = 0.0 if self._hurry.is_set() else min(policy.window, self._remaining())
        log.info(
            "draining: stopped accepting; closing %d connections over %.1f s (timeout %.1f s)",
            len(connections),
            window,
            self._remaining(),
        )
        start = loop.time()
        # Looked up once: no new session can start now that the listener is closed,
        # except on connections still in their handshake (the stragglers below).
        self._sessions = _sessions_by_connection(self.hub)
        for index, connection in enumerate(connections):
            # Evenly spaced: the first at once, the last one step before the window ends.
            await self._pause(start + window * index / len(connections) - loop.time())
            self._close([connection])
        while not closed.done():
            remaining = self._remaining()
            if remaining <= 0:
                break
            # Connections that finished their handshake after the sweep began.
            if any(connection not in self._asked for connection in self.server.connections):
                self._sessions = _sessions_by_connection(self.hub)
                self._close(self.server.connections)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), min(_SWEEP_INTERVAL, remaining))
        if not closed.done():
            self._abort()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), _HURRY_GRACE)
        log.info("drained in %.1f s", loop.time() - start)

    def _remaining(self) -> float:
        assert self._deadline is not None
        return self._deadline - asyncio.get_running_loop().time()

    async def _pause(self, seconds: float) -> None:
        # Sleep, unless told to hurry; never past the deadline.
        seconds = min(seconds, self._remaining())
        if seconds <= 0 or self._hurry.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), seconds)
        if self._hurry.is_set():
            # Everything not asked yet goes now.
            self._close(self.server.connections)

    def _close(self, connections: Iterable[ServerConnection]) -> None:
        for connection in list(connections):
            if connection in self._asked:
                continue
            self._asked.add(connection)
            session = self._sessions.get(connection)
            if session is not None:
                # Queued messages first, then 4001: the client may reconnect.
                session.disconnect(CLOSE_SHUTDOWN, flush=True)
                continue
            task = asyncio.ensure_future(connection.close(1001, "going away"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _abort(self) -> None:
        # Every connection the server holds, handshakes in progress included
        # (the server's own close waits for them all).
        held: Iterable[ServerConnection] = getattr(self.server, "_all", self.server.connections)
        left = list(held)
        log.warning("drain timeout: aborting %d connections still open", len(left))
        for connection in left:
            connection.transport.abort()


def _sessions_by_connection(hub: Any) -> dict[Any, Any]:
    # Each channel session knows its connection; a hub without sessions
    # (a stand-in in tests) has none to close.
    sessions = hub.sessions() if hasattr(hub, "sessions") else ()
    return {session.connection: session for session in sessions}
