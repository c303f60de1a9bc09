"""The ``memory://`` backplane: one process, nothing persisted.

A :class:`MemoryStore` plays the broker: it holds every stream, its history and
presence, and delivers to every :class:`MemoryBackplane` attached to it. One
process normally has one store and one backplane; tests attach two backplanes
to one store to play two nodes sharing a broker.

Every stream gets a random epoch when the store first sees it, so a new process
(a new store) starts new epochs: a client resuming from the old process learns
``recovered=False``. A stream with no publication for its history's ``ttl``
is forgotten the same way.
"""

from __future__ import annotations

import collections
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...exceptions import BackplaneError
from .base import (
    DEFAULT_RETENTION,
    Backplane,
    ClientInfo,
    Delivery,
    DeliveryCallback,
    HistoryResult,
    Join,
    Leave,
    Publication,
    Reset,
    Retention,
    StreamPosition,
)

__all__ = ["MemoryStore", "MemoryBackplane", "new_epoch"]

logger = logging.getLogger("wsskit.channels")

# How often (in store-clock seconds) a publish also sweeps every stream for
# expired ones, so channels nobody reads again still free their memory.
_SWEEP_INTERVAL = 1.0


def new_epoch() -> str:
    """A fresh random epoch: 12 URL-safe characters (72 bits)."""
    return secrets.token_urlsafe(9)


@dataclass
class _Stream:
    epoch: str
    # When the stream is forgotten unless a publication comes first.
    expires_at: float
    top: int = 0
    # (publication, expires_at), oldest first.
    entries: collections.deque[tuple[Publication, float]] = field(default_factory=collections.deque)
    # idempotency key -> (publication, expires_at)
    keys: dict[str, tuple[Publication, float]] = field(default_factory=dict)

    def trim(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][1] <= now:
            entries.popleft()
        if self.keys:
            for key in [k for k, (_, until) in self.keys.items() if until <= now]:
                del self.keys[key]


class MemoryStore:
    """Streams, history and presence held in this process, shared by its backplanes.

    ``clock`` (seconds, monotonic) measures history lifetimes; tests pass a
    manual one. ``empty_ttl`` is how long a stream that was read but never
    published to keeps its epoch.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, empty_ttl: float = 300.0) -> None:
        self.clock = clock
        self.empty_ttl = empty_ttl
        self._streams: dict[str, _Stream] = {}
        self._presence: dict[str, dict[str, ClientInfo]] = {}
        self._nodes: set[MemoryBackplane] = set()
        self._next_sweep = clock() + _SWEEP_INTERVAL
        self._available = True

    # -- outage and restart, for tests and drills ---------------------------------

    @property
    def available(self) -> bool:
        """False while the store plays a broker outage: every operation raises BackplaneError."""
        return self._available

    def set_available(self, available: bool) -> None:
        """Start (False) or end (True) a simulated broker outage."""
        self._available = available

    def clear(self) -> None:
        """Forget every stream and presence: a broker restart without persistence.

        Each stream's next use starts a new epoch at offset 0.
        """
        self._streams.clear()
        self._presence.clear()

    def restart(self) -> None:
        """A broker restart without persistence, as connected nodes live it.

        Forgets every stream and presence (:meth:`clear`), then delivers a
        :class:`~wsskit.channels.backplanes.base.Reset` on every channel each
        node is subscribed to, as a node reconnecting to a broker that lost
        its history does.
        """
        self.clear()
        for node in list(self._nodes):
            for channel in list(node._callbacks):
                node._deliver(channel, Reset())

    # -- internals ----------------------------------------------------------------

    def _check(self) -> None:
        if not self._available:
            raise BackplaneError("the memory backplane is unavailable (simulated outage)")

    def _stream(self, channel: str, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is not None and stream.expires_at <= now:
            del self._streams[channel]
            stream = None
        if stream is None:
            stream = _Stream(new_epoch(), now + self.empty_ttl)
            self._streams[channel] = stream
        else:
            stream.trim(now)
        return stream

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_INTERVAL
        for channel in [c for c, s in self._streams.items() if s.expires_at <= now]:
            del self._streams[channel]

    def _deliver(self, channel: str, delivery: Delivery) -> None:
        for node in list(self._nodes):
            node._deliver(channel, delivery)

    def _publish(self, channel: str, data: Any, key: str | None, retention: Retention) -> Publication:
        self._check()
        now = self.clock()
        self._sweep(now)
        stream = self._stream(channel, now)
        if key is not None:
            found = stream.keys.get(key)
            if found is not None:
                return found[0]
        stream.top += 1
        publication = Publication(stream.top, stream.epoch, data)
        stream.expires_at = now + retention.ttl
        if retention.size > 0:
            stream.entries.append((publication, now + retention.ttl))
            while len(stream.entries) > retention.size:
                stream.entries.popleft()
        if key is not None and retention.idempotency_window > 0:
            stream.keys[key] = (publication, now + retention.idempotency_window)
        self._deliver(channel, publication)
        return publication

    def _history(self, channel: str, since: StreamPosition | None, limit: int | None) -> HistoryResult:
        self._check()
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        stream = self._stream(channel, self.clock())
        position = StreamPosition(stream.top, stream.epoch)
        entries = [publication for publication, _ in stream.entries]
        if since is None:
            if limit is not None:
                entries = entries[len(entries) - limit :] if limit else []
            return HistoryResult(entries, position, True)
        if since.epoch != stream.epoch or since.offset > stream.top:
            return HistoryResult([], position, False)
        # The first retained offset must be at most since.offset + 1, unless
        # nothing was published after since.offset at all.
        first = entries[0].offset if entries else stream.top + 1
        if since.offset < stream.top and first > since.offset + 1:
            return HistoryResult([], position, False)
        missed = [p for p in entries if p.offset > since.offset]
        if limit is not None:
            missed = missed[:limit]
        return HistoryResult(missed, position, True)

    def _presence_add(self, channel: str, info: ClientInfo, announce: bool) -> None:
        self._check()
        self._presence.setdefault(channel, {})[info.client] = info
        if announce:
            self._deliver(channel, Join(info))

    def _presence_remove(self, channel: str, info: ClientInfo, announce: bool) -> None:
        self._check()
        clients = self._presence.get(channel)
        if clients is None or clients.pop(info.client, None) is None:
            return
        if not clients:
            del self._presence[channel]
        if announce:
            self._deliver(channel, Leave(info))

    def _presence_list(self, channel: str) -> list[ClientInfo]:
        self._check()
        return sorted(self._presence.get(channel, {}).values(), key=lambda info: info.client)


class MemoryBackplane(Backplane):
    """A node's handle on a :class:`MemoryStore` (a new store of its own by default)."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._callbacks: dict[str, dict[DeliveryCallback, None]] = {}
        self._started = False

    def __repr__(self) -> str:
        return f"<MemoryBackplane channels={len(self._callbacks)}>"

    async def start(self) -> None:
        self._started = True
        self.store._nodes.add(self)

    async def close(self) -> None:
        self._started = False
        self.store._nodes.discard(self)
        self._callbacks.clear()

    def subscriptions(self) -> dict[str, int]:
        """How many callbacks this node has subscribed, per channel."""
        return {channel: len(callbacks) for channel, callbacks in self._callbacks.items()}

    @property
    def ready(self) -> bool:
        """True once started and while the store is not playing an outage."""
        return self._started and self.store.available

    def _check_started(self) -> None:
        if not self._started:
            raise BackplaneError("the backplane is not started (or closed)")

    async def health(self) -> None:
        self._check_started()
        self.store._check()

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Publication:
        self._check_started()
        return self.store._publish(channel, data, idempotency_key, retention)

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        self._check_started()
        return self.store._history(channel, since, limit)

    async def subscribe(self, channel: str, callback: DeliveryCallback) -> None:
        self._check_started()
        self.store._check()
        self._callbacks.setdefault(channel, {})[callback] = None

    async def unsubscribe(self, channel: str, callback: DeliveryCallback) -> None:
        callbacks = self._callbacks.get(channel)
        if callbacks is not None:
            callbacks.pop(callback, None)
            if not callbacks:
                del self._callbacks[channel]

    async def presence_add(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        self._check_started()
        self.store._presence_add(channel, info, announce)

    async def presence_remove(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        self._check_started()
        self.store._presence_remove(channel, info, announce)

    async def presence(self, channel: str) -> Sequence[ClientInfo]:
        self._check_started()
        return self.store._presence_list(channel)

    def _deliver(self, channel: str, delivery: Delivery) -> None:
        callbacks = self._callbacks.get(channel)
        if not callbacks:
            return
        for callback in list(callbacks):
            try:
                callback(channel, delivery)
            except Exception:
                logger.exception("a delivery callback for %r failed", channel)
