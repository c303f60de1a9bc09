"""Prometheus metrics of ``wsskit serve``, served at ``GET /metrics``.

The hot path makes no prometheus-client call: connections count messages and
bytes in plain integers (:class:`~wsskit.asyncio.connection.Connection`'s
``messages_received``, ``messages_sent``, ``bytes_received``, ``bytes_sent``),
and :class:`Metrics` folds what changed into the Prometheus counters once a
second and when a connection closes. Rarer events (handshakes, closes,
rate-limit refusals) are counted as they happen.

Every series carries a ``worker`` label: ``$WSSKIT_WORKER`` (set by the
supervisor of ``wsskit serve --workers N``), ``"0"`` without it. When
``$PROMETHEUS_MULTIPROC_DIR`` is set, prometheus-client's multiprocess mode
is used: each worker writes its values into that folder and any worker's
``/metrics`` shows every worker's series.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..asyncio.connection import Connection
from ..exceptions import BackplaneError, Rejected
from ..guards.ratelimit import BYTE_RATE_EXCEEDED, MESSAGE_RATE_EXCEEDED
from ..protocol.events import Reject
from ..protocol.headers import Headers

__all__ = ["METRICS_PATH", "Metrics", "worker_name", "tls_version"]

#: Where Prometheus scrapes.
METRICS_PATH = "/metrics"

#: The classic text format, which every Prometheus version reads (newer
#: prometheus-client releases label the same text "version=1.0.0").
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The environment variable naming this worker (set by the worker supervisor).
WORKER_ENV = "WSSKIT_WORKER"

# Latency samples kept between two folds: a bound on memory under a flood
# of publishes (the histogram then sees a sample of them).
_MAX_LATENCY_SAMPLES = 10_000

_RATE_REASONS = {MESSAGE_RATE_EXCEEDED: "message", BYTE_RATE_EXCEEDED: "byte"}


def worker_name() -> str:
    """This process's worker label: ``$WSSKIT_WORKER``, or ``"0"``."""
    return os.environ.get(WORKER_ENV, "").strip() or "0"


def tls_version(connection: Connection) -> str:
    """The TLS version of ``connection`` (``TLSv1.3``), or ``"none"`` for plain ws://."""
    with contextlib.suppress(Exception):  # a transport without TLS, or one gone
        ssl_object = connection.ssl_object
        if ssl_object is not None:
            version = ssl_object.version()
            if version:
                return str(version)
    return "none"


class _Traffic:
    # What one open connection had counted at the last fold.
    __slots__ = ("bytes_received", "bytes_sent", "messages_received", "messages_sent", "tls")

    def __init__(self, tls: str) -> None:
        self.tls = tls
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0


class Metrics:
    """The metrics of one ``wsskit serve`` process.

    Call :meth:`opened` and :meth:`closed` around each connection's handler,
    :meth:`fold` once a second (:meth:`run` does), and answer ``/metrics``
    with :meth:`answer`. Totals of this process (for the dashboard) are kept
    in plain attributes too: :attr:`totals`.
    """

    def __init__(self, *, worker: str | None = None, multiprocess_dir: str | None = None) -> None:
        self.worker = worker if worker is not None else worker_name()
        self.multiprocess_dir = (
            multiprocess_dir if multiprocess_dir is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        )
        # A registry per app: several apps in one process (tests) do not clash.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        labels = ["worker"]
        self._connections_open = Gauge(
            "wsskit_connections_open",
            "WebSocket connections open now",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._connections = Counter(
            "wsskit_connections", "WebSocket connections opened", labels, registry=registry
        )
        self._handshakes = Counter(
            "wsskit_handshakes",
            "Opening handshakes by result (accepted, rejected) and HTTP status",
            ["worker", "result", "status"],
            registry=registry,
        )
        self._messages = Counter(
            "wsskit_messages",
            "WebSocket messages by direction (in, out)",
            ["worker", "direction"],
            registry=registry,
        )
        self._bytes = Counter(
            "wsskit_bytes",
            "Bytes on the wire by direction (in, out)",
            ["worker", "direction"],
            registry=registry,
        )
        self._close_codes = Counter(
            "wsskit_close_codes", "Closed connections by close code", ["worker", "code"], registry=registry
        )
        self._rate_limited = Counter(
            "wsskit_rate_limit_hits",
            "Rate limits hit, by kind (connection, message, byte)",
            ["worker", "kind"],
            registry=registry,
        )
        self._publish_latency = Histogram(
            "wsskit_backplane_publish_seconds",
            "Time a publish to the backplane takes",
            labels,
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self._publish_errors = Counter(
            "wsskit_backplane_errors", "Backplane publishes that failed", labels, registry=registry
        )
        self._tls = Gauge(
            "wsskit_tls_connections_open",
            "Open connections by TLS version",
            ["worker", "version"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Series with the worker label only exist from the start (at zero),
        # so a scrape right after startup already shows them.
        for metric in (
            self._connections_open,
            self._connections,
            self._publish_latency,
            self._publish_errors,
        ):
            metric.labels(self.worker)
        self._open: dict[Connection, _Traffic] = {}
        self._latencies: list[float] = []
        self._tls_open: dict[str, int] = {}
        #: This process's totals: plain numbers for the dashboard's snapshots.
        self.totals: dict[str, int] = {
            "connections": 0,
            "messages_in": 0,
            "messages_out": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        #: Close codes seen by this process, and handshakes refused, by status.
        self.close_codes: dict[int, int] = {}
        self.rejected: dict[int, int] = {}

    # -- connections -------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        """Count an accepted handshake and start following ``connection``'s traffic."""
        version = tls_version(connection)
        self._open[connection] = _Traffic(version)
        self._tls_open[version] = self._tls_open.get(version, 0) + 1
        self.totals["connections"] += 1
        self._connections.labels(self.worker).inc()
        self._connections_open.labels(self.worker).inc()
        self._tls.labels(self.worker, version).inc()
        self._handshakes.labels(self.worker, "accepted", "101").inc()

    def closed(self, connection: Connection) -> None:
        """Fold ``connection``'s last traffic and count its close code."""
        traffic = self._open.pop(connection, None)
        if traffic is None:
            return
        self._fold_one(connection, traffic)
        self._connections_open.labels(self.worker).dec()
        self._tls.labels(self.worker, traffic.tls).dec()
        self._tls_open[traffic.tls] -= 1
        code = connection.close_code
        code = 1006 if code is None else code
        self.close_codes[code] = self.close_codes.get(code, 0) + 1
        self._close_codes.labels(self.worker, str(code)).inc()
        kind = _RATE_REASONS.get(connection.close_reason or "") if code == 1008 else None
        if kind is not None:
            self.rate_limited(kind)

    def handshake_rejected(self, status: int) -> None:
        """Count an opening handshake answered with HTTP ``status``."""
        self.rejected[status] = self.rejected.get(status, 0) + 1
        self._handshakes.labels(self.worker, "rejected", str(status)).inc()

    def rate_limited(self, kind: str) -> None:
        """Count a rate limit hit: ``connection``, ``message`` or ``byte``."""
        self._rate_limited.labels(self.worker, kind).inc()

    @property
    def open_connections(self) -> int:
        """Connections open in this process (followed by :meth:`opened`)."""
        return len(self._open)

    def tls_versions(self) -> dict[str, int]:
        """Open connections of this process by TLS version."""
        return {version: count for version, count in self._tls_open.items() if count}

    # -- folding -----------------------------------------------------------------

    def fold(self) -> None:
        """Move what every open connection counted since the last fold into the counters."""
        for connection, traffic in self._open.items():
            self._fold_one(connection, traffic)
        latencies, self._latencies = self._latencies, []
        observe = self._publish_latency.labels(self.worker).observe
        for latency in latencies:
            observe(latency)

    def _fold_one(self, connection: Connection, traffic: _Traffic) -> None:
        messages_in = connection.messages_received - traffic.messages_received
        messages_out = connection.messages_sent - traffic.messages_sent
        bytes_in = connection.bytes_received - traffic.bytes_received
        bytes_out = connection.bytes_sent - traffic.bytes_sent
        traffic.messages_received += messages_in
        traffic.messages_sent += messages_out
        traffic.bytes_received += bytes_in
        traffic.bytes_sent += bytes_out
        totals = self.totals
        worker = self.worker
        if messages_in:
            totals["messages_in"] += messages_in
            self._messages.labels(worker, "in").inc(messages_in)
        if messages_out:
            totals["messages_out"] += messages_out
            self._messages.labels(worker, "out").inc(messages_out)
        if bytes_in:
            totals["bytes_in"] += bytes_in
            self._bytes.labels(worker, "in").inc(bytes_in)
        if bytes_out:
            totals["bytes_out"] += bytes_out
            self._bytes.labels(worker, "out").inc(bytes_out)

    async def run(self, interval: float = 1.0) -> None:
        """Fold every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.fold()

    # -- wrappers that count -------------------------------------------------------

    def counting_guard(self, guard: Callable[..., Any]) -> Callable[..., Any]:
        """``guard`` (a server guard), counting the handshakes it refuses."""

        async def checked(connection: Any, request: Any) -> None:
            try:
                result = guard(connection, request)
                if inspect.isawaitable(result):
                    await result
            except Rejected as exc:
                self.handshake_rejected(exc.status)
                raise

        return checked

    def counting_limiter(self, limiter: Any) -> Any:
        """``limiter`` (a connection limiter), counting the connections it refuses."""
        return _CountingLimiter(limiter, self)

    def time_publishes(self, backplane: Any) -> None:
        """Time ``backplane.publish`` and count its failures (wraps the instance's method)."""
        publish = backplane.publish

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await publish(*args, **kwargs)
            except BackplaneError:
                self._publish_errors.labels(self.worker).inc()
                raise
            finally:
                # fold() swaps the list: look it up each time.
                if len(self._latencies) < _MAX_LATENCY_SAMPLES:
                    self._latencies.append(time.perf_counter() - started)

        backplane.publish = timed

    # -- the endpoint --------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (every worker's in multiprocess mode)."""
        self.fold()
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def answer(self) -> Reject:
        """The HTTP answer to ``GET /metrics``."""
        headers = Headers([("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")])
        # A Reject is how the server answers plain HTTP, whatever the status.
        return Reject(200, headers, self.exposition())


class _CountingLimiter:
    # A connection limiter that counts its refusals (429 over the rate, 503
    # over the caps) as rejected handshakes and rate-limit hits.
    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def admit(self, ip: str) -> Any:
        try:
            return self._inner.admit(ip)
        except Rejected as exc:
            self._metrics.handshake_rejected(exc.status)
            self._metrics.rate_limited("connection")
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
