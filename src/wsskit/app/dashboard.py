"""The live dashboard's data: node snapshots over the backplane, pushed to ``/dashboard/ws``.

Every node (each ``wsskit serve`` process, each worker) publishes a snapshot
of its counters once a second into the reserved channel
:data:`SYSTEM_CHANNEL` straight through the backplane, and every node
subscribes to it: so whichever node a browser reaches, its dashboard shows
one series per node. No namespace takes the ``wsskit-system`` prefix, so
channel clients cannot subscribe to it (error 104).

The WebSocket at ``/dashboard/ws`` is protected by the API tokens of
``POST /api/publish`` (:class:`~wsskit.app.settings.ApiAccess`): the browser
sends ``{"token": "..."}`` as its first message, within
:data:`AUTH_TIMEOUT` seconds; nothing is sent before a valid token, and a
wrong or missing one closes the connection with 1008. A token goes in a
message rather than in the URL or the subprotocol list so that it never
appears in request logs. Without API tokens the endpoint is off (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from ..asyncio.connection import Connection
from ..channels.backplanes.base import Delivery, Publication, Retention
from ..channels.hub import Hub
from ..exceptions import BackplaneError, ConnectionClosed, Unauthorized
from .metrics import Metrics
from .settings import ApiAccess

__all__ = ["DASHBOARD_WS_PATH", "SYSTEM_CHANNEL", "AUTH_TIMEOUT", "Dashboard", "node_name"]

log = logging.getLogger("wsskit.app")

#: The dashboard's WebSocket endpoint.
DASHBOARD_WS_PATH = "/dashboard/ws"

#: Where nodes publish their snapshots; no namespace serves it to clients.
SYSTEM_CHANNEL = "wsskit-system:stats"

#: Seconds a dashboard connection has to send its token.
AUTH_TIMEOUT = 10.0

# A node silent for this long is dropped from the dashboard.
_NODE_EXPIRY = 10.0

# Snapshots are not history: keep one, briefly.
_RETENTION = Retention(size=1, ttl=30.0, idempotency_window=0.0)

# The busiest channels shown per node.
_TOP_CHANNELS = 20


def node_name(worker: str) -> str:
    """This node's name on the dashboard: ``host/pid`` and the worker index."""
    return f"{socket.gethostname()}/{os.getpid()} worker {worker}"


class Dashboard:
    """Publishes this node's snapshots, collects every node's, serves them to dashboards.

    :meth:`start` begins both loops; :meth:`close` ends them. :meth:`handler`
    is the connection handler of :data:`DASHBOARD_WS_PATH` (raises nothing:
    a failure closes the connection).
    """

    def __init__(
        self, hub: Hub, metrics: Metrics, access: ApiAccess | None, *, interval: float = 1.0
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.access = access
        self.interval = interval
        self.node = node_name(metrics.worker)
        #: The latest snapshot of every node heard from: node -> (received at, snapshot).
        self.nodes: dict[str, tuple[float, dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        # The backplane's own publish, taken before Metrics.time_publishes
        # wraps it: the snapshots are no users' traffic and must not count
        # in the publish latency and error metrics.
        self._publish = hub.backplane.publish

    def snapshot(self) -> dict[str, Any]:
        """This node's counters now (totals since start; the browser derives rates)."""
        metrics = self.metrics
        channels = self.hub.subscriber_counts()
        top = sorted(channels.items(), key=lambda item: (-item[1], item[0]))[:_TOP_CHANNELS]
        return {
            "node": self.node,
            "worker": metrics.worker,
            "time": time.time(),
            "connections": metrics.open_connections,
            "connections_total": metrics.totals["connections"],
            "messages_in": metrics.totals["messages_in"],
            "messages_out": metrics.totals["messages_out"],
            "bytes_in": metrics.totals["bytes_in"],
            "bytes_out": metrics.totals["bytes_out"],
            "tls": metrics.tls_versions(),
            "channels": len(channels),
            "subscribers": sum(channels.values()),
            "top_channels": [{"channel": name, "subscribers": count} for name, count in top],
            "close_codes": {str(code): count for code, count in sorted(metrics.close_codes.items())},
        }

    def start(self) -> None:
        """Start publishing and collecting snapshots (in the running loop)."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._publish_loop()))

    async def close(self) -> None:
        """Stop the loops and leave the system channel."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._subscribed:
            self._subscribed = False
            with contextlib.suppress(Exception):
                await self.hub.backplane.unsubscribe(SYSTEM_CHANNEL, self._on_delivery)

    async def _publish_loop(self) -> None:
        await self.hub.wait_started()
        while True:
            self.metrics.fold()
            snapshot = self.snapshot()
            # Our own snapshot counts even while the broker is away.
            self.nodes[self.node] = (time.monotonic(), snapshot)
            try:
                if not self._subscribed:
                    await self.hub.backplane.subscribe(SYSTEM_CHANNEL, self._on_delivery)
                    self._subscribed = True
                await self._publish(SYSTEM_CHANNEL, snapshot, retention=_RETENTION)
            except BackplaneError as exc:
                log.debug("dashboard: cannot publish this node's snapshot: %s", exc)
            await asyncio.sleep(self.interval)

    def _on_delivery(self, channel: str, delivery: Delivery) -> None:
        if not isinstance(delivery, Publication):
            return
        data = delivery.data
        if isinstance(data, dict) and isinstance(data.get("node"), str):
            self.nodes[data["node"]] = (time.monotonic(), data)

    def current(self) -> dict[str, Any]:
        """What dashboards receive each second: every live node's latest snapshot."""
        now = time.monotonic()
        # This node's own entry is always fresh (the others come once a second).
        self.nodes[self.node] = (now, self.snapshot())
        for node in [node for node, (seen, _) in self.nodes.items() if now - seen > _NODE_EXPIRY]:
            del self.nodes[node]
        return {
            "type": "stats",
            "node": self.node,
            "nodes": {node: snapshot for node, (_, snapshot) in sorted(self.nodes.items())},
        }

    async def authenticate(self, ws: Connection) -> str | None:
        """Read the first message's token; return the subject, or None after closing with 1008."""
        if self.access is None:
            await ws.close(1008, "the dashboard is off: no API tokens configured")
            return None
        try:
            first = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT)
        except asyncio.TimeoutError:
            await ws.close(1008, "no token")
            return None
        token = None
        if isinstance(first, str):
            with contextlib.suppress(ValueError):
                document = json.loads(first)
                if isinstance(document, dict) and isinstance(document.get("token"), str):
                    token = document["token"]
        if not token:
            await ws.close(1008, 'send {"token": ...} first')
            return None
        try:
            identity = self.access.authenticator.verify(token)
        except Unauthorized:
            await ws.close(1008, "unauthorized")
            return None
        return identity.subject

    async def handler(self, ws: Connection) -> None:
        """``/dashboard/ws``: check the token, then push :meth:`current` every interval."""
        subject = await self.authenticate(ws)
        if subject is None:
            return
        log.info("dashboard opened by %s", subject)
        reader = asyncio.get_running_loop().create_task(self._discard(ws))
        try:
            await ws.send(json.dumps({"type": "hello", "node": self.node, "interval": self.interval}))
            while not reader.done():
                await ws.send(json.dumps(self.current(), separators=(",", ":")))
                await asyncio.wait({reader}, timeout=self.interval)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader

    @staticmethod
    async def _discard(ws: Connection) -> None:
        # Nothing is expected after the token; reading notices the close.
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
