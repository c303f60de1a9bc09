"""The hub: speaks the channels protocol on each connection, over one backplane.

``Hub(backplane, namespaces)`` serves any number of connections (its
:meth:`Hub.handler` is a :func:`wsskit.asyncio.serve` handler) and lets backend
code publish with :meth:`Hub.publish`. On this node it holds one backplane
subscription per channel, shared by every local subscriber.

Resuming without loss: to subscribe a connection, the hub first makes sure the
backplane subscription is in force and buffers what it delivers for that
connection, then reads the history (from the client's ``since``, or just the
position), answers with it, and then flushes the buffer, dropping what the
history already held (offsets at or below the answer's). A publication made
while the history was read is thus sent once, after the history, in order.

Broker outages: :meth:`Hub.start` with ``retry=True`` does not fail when the
broker is unreachable; it keeps trying in the background (capped, jittered
exponential backoff) and :attr:`Hub.ready` turns True once connected. While the
hub is not ready, commands that need the broker fail with error 108 and
:meth:`Hub.publish` raises :class:`~wsskit.exceptions.BackplaneError`: nothing
succeeds silently. When the backplane reports a
:class:`~wsskit.channels.backplanes.base.Reset` on a channel (it came back from
an outage and cannot prove it missed nothing), every session subscribed to
that channel is closed with 4002 (insufficient state): its client resumes and
learns ``recovered: false`` when publications were lost.

Each connection has a bounded queue of outgoing messages. A connection that
does not read fast enough to keep it from overflowing is closed with 4000
(slow consumer, reconnect): it resumes from its last offset like any other.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import BackplaneError, ConnectionClosed
from .backplanes.base import (
    Backplane,
    ClientInfo,
    Delivery,
    HistoryResult,
    Join,
    Leave,
    Publication,
    Reset,
    StreamPosition,
)
from .namespaces import Namespace, Namespaces, Permission, allowed
from .wire import (
    CLOSE_BAD_PROTOCOL,
    CLOSE_INSUFFICIENT_STATE,
    CLOSE_SHUTDOWN,
    CLOSE_SLOW_CONSUMER,
    SUBPROTOCOL,
    CloseCode,
    Command,
    CommandError,
    ErrorCode,
    History,
    Ping,
    Presence,
    ProtocolViolation,
    Publish,
    Subscribe,
    Unsubscribe,
    WireLimits,
    check_channel,
    error_reply,
    history_result,
    join_push,
    leave_push,
    parse_command,
    pub_push,
    result_reply,
)

__all__ = ["HubLimits", "HubStats", "Hub", "ChannelSession"]

logger = logging.getLogger("wsskit.channels")


@dataclass(frozen=True, slots=True)
class HubLimits:
    """Per-connection bounds.

    ``max_channels``: subscriptions one connection may hold (105 beyond).
    ``queue_size``: outgoing messages waiting for one connection; one more
    closes it with 4000. ``wire``: message size, channel name length, history
    limit (see :class:`~wsskit.channels.wire.WireLimits`).
    """

    max_channels: int = 128
    queue_size: int = 1024
    wire: WireLimits = field(default_factory=WireLimits)

    def __post_init__(self) -> None:
        if self.max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        if self.queue_size < 1:
            raise ValueError("queue_size must be at least 1")


@dataclass
class HubStats:
    """Counters, for metrics and tests."""

    sessions: int = 0
    slow_consumers: int = 0
    publications: int = 0
    subscriptions: int = 0


@dataclass(eq=False)
class _LocalChannel:
    # Sessions subscribed (or subscribing) to one channel on this node.
    sessions: dict[ChannelSession, None] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subscribed: bool = False


class Hub:
    """Channels over ``backplane`` with ``namespaces``.

    ``token_key`` (32 bytes or more) verifies channel tokens; it is required
    when a namespace uses the ``"token"`` permission. With
    ``require_subprotocol`` (the default) a connection that did not negotiate
    ``wsskit.channels.v1`` is closed with 4008. ``retry_delay`` and
    ``retry_max_delay`` (seconds) bound the backoff of :meth:`start` with
    ``retry=True``.

    Use ``async with Hub(...) as hub:`` or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        backplane: Backplane,
        namespaces: Iterable[Namespace] | Namespaces = (),
        *,
        token_key: bytes | None = None,
        limits: HubLimits = HubLimits(),
        require_subprotocol: bool = True,
        retry_delay: float = 0.5,
        retry_max_delay: float = 15.0,
    ) -> None:
        if not (0 < retry_delay <= retry_max_delay):
            raise ValueError("retry_delay must be positive and at most retry_max_delay")
        self.backplane = backplane
        self.namespaces = namespaces if isinstance(namespaces, Namespaces) else Namespaces(namespaces)
        if token_key is not None and len(token_key) < 32:
            raise ValueError("token_key must be at least 32 bytes")
        if token_key is None and any(ns.uses_tokens() for ns in self.namespaces):
            raise ValueError("a namespace uses channel tokens: pass token_key")
        self.token_key = token_key
        self.limits = limits
        self.require_subprotocol = require_subprotocol
        self.stats = HubStats()
        self._channels: dict[str, _LocalChannel] = {}
        self._sessions: set[ChannelSession] = set()
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self._closing = False
        self._started = False
        self._connected = asyncio.Event()
        self._starter: asyncio.Task[None] | None = None

    #: The subprotocol to pass to ``serve(subprotocols=...)``.
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,)

    async def start(self, *, retry: bool = False) -> None:
        """Start the backplane (connect to the broker).

        Without ``retry``, raises :class:`~wsskit.exceptions.BackplaneError`
        when the broker is unreachable. With ``retry``, never raises for that:
        after a failed first attempt it returns and keeps trying in the
        background, waiting between attempts a jittered delay that doubles from
        ``retry_delay`` up to ``retry_max_delay``, logging each failure once at
        WARNING with the next delay, until it connects (:attr:`ready` turns
        True, :meth:`wait_started` returns) or :meth:`close` is called.
        """
        self._closing = False
        if self._started or self._starter is not None:
            return
        if not retry:
            await self.backplane.start()
            self._now_started()
            return
        try:
            await self.backplane.start()
        except (BackplaneError, OSError) as exc:
            delay = self._retry_delay(0)
            logger.warning("channels: the broker is unreachable (%s); retrying in %.1f s", exc, delay)
            self._starter = asyncio.create_task(self._keep_starting(delay), name="wsskit-hub-start")
            return
        self._now_started()

    def _retry_delay(self, attempt: int) -> float:
        # Equal jitter: half the capped exponential delay, plus up to as much
        # again at random, so nodes restarted together do not retry in step.
        cap = min(self.retry_max_delay, self.retry_delay * 2.0 ** min(attempt, 32))
        return cap / 2 + random.uniform(0, cap / 2)  # noqa: S311 - a timer, not a secret

    async def _keep_starting(self, delay: float) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(delay)  # a backoff timer, not a synchronisation
            attempt += 1
            try:
                await self.backplane.start()
            except (BackplaneError, OSError) as exc:
                delay = self._retry_delay(attempt)
                logger.warning("channels: the broker is unreachable (%s); retrying in %.1f s", exc, delay)
                continue
            except Exception:
                delay = self._retry_delay(attempt)
                logger.exception("channels: starting the backplane failed; retrying in %.1f s", delay)
                continue
            self._starter = None
            self._now_started()
            logger.info("channels: connected to the broker after %d failed attempts", attempt)
            return

    def _now_started(self) -> None:
        self._started = True
        self._connected.set()

    async def wait_started(self) -> None:
        """Wait until the first connection to the broker succeeded (see :meth:`start`)."""
        await self._connected.wait()

    def _check_started(self) -> None:
        # Before the first connection, the backplane cannot even be asked.
        if not self._started:
            raise BackplaneError("channels are unavailable: the broker is unreachable (retrying)")

    @property
    def ready(self) -> bool:
        """True while the backplane is connected and usable.

        False before the first successful connection to the broker, during an
        outage, and once closed. Cheap (no round trip): for readiness probes.
        """
        return self._started and not self._closing and self.backplane.ready

    def sessions(self) -> list[ChannelSession]:
        """The channel sessions open on this hub now (a copy: safe to iterate while they close).

        Each has its ``connection``; ``session.disconnect(close, flush=True)``
        sends what is queued, then closes (what a graceful drain does).
        """
        return list(self._sessions)

    def subscriber_counts(self) -> dict[str, int]:
        """Channel name -> the sessions of this hub subscribed to it (this node only)."""
        return {name: len(local.sessions) for name, local in self._channels.items()}

    async def close(self) -> None:
        """Close every connection with 4001 (shutdown, reconnect), then the backplane."""
        self._closing = True
        starter, self._starter = self._starter, None
        if starter is not None:
            starter.cancel()
            await asyncio.gather(starter, return_exceptions=True)
        sessions = list(self._sessions)
        for session in sessions:
            session.disconnect(CLOSE_SHUTDOWN, flush=True)
        await asyncio.gather(*(session.wait_closed() for session in sessions), return_exceptions=True)
        await self.backplane.close()
        self._started = False
        self._connected.clear()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- backend API ----------------------------------------------------------------

    def namespace(self, channel: str) -> Namespace:
        """The namespace of ``channel``; raises :class:`ValueError` for an invalid name or none."""
        check_channel(channel, self.limits.wire)
        namespace = self.namespaces.get(channel)
        if namespace is None:
            raise ValueError(f"no namespace for channel {channel!r}")
        return namespace

    async def publish(self, channel: str, data: Any, *, idempotency_key: str | None = None) -> Publication:
        """Publish ``data`` (any JSON value) to ``channel``, from backend code.

        Returns the publication (offset, epoch). Raises :class:`ValueError`
        for an invalid channel, one without a namespace, or data JSON cannot
        carry, and :class:`~wsskit.exceptions.BackplaneError` when the broker fails.
        """
        namespace = self.namespace(channel)
        pub_push(channel, 0, "", data)  # fails early on NaN or unserializable data
        self._check_started()
        publication = await self.backplane.publish(
            channel, data, idempotency_key=idempotency_key, retention=namespace.retention
        )
        self.stats.publications += 1
        return publication

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        """Read ``channel``'s history (see :meth:`Backplane.history`)."""
        self.namespace(channel)
        self._check_started()
        return await self.backplane.history(channel, since=since, limit=limit)

    async def presence(self, channel: str) -> Sequence[ClientInfo]:
        """Who is subscribed to ``channel`` (a namespace with ``presence=True``)."""
        self.namespace(channel)
        self._check_started()
        return await self.backplane.presence(channel)

    # -- serving ----------------------------------------------------------------------

    def select_subprotocol(self, connection: Any, offered: Sequence[str]) -> str | None:
        """For ``serve(select_subprotocol=...)``: ``wsskit.channels.v1`` when offered."""
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    async def handler(self, connection: Any) -> None:
        """Speak the channels protocol on ``connection`` until it closes.

        ``connection`` is a :class:`wsskit.asyncio.ServerConnection` (or
        anything with ``recv``, ``send``, ``close``, ``id``, ``identity`` and
        ``subprotocol``).
        """
        session = ChannelSession(self, connection)
        await session.run()

    # -- one backplane subscription per channel on this node ----------------------------

    async def _attach(self, channel: str, session: ChannelSession) -> None:
        self._check_started()
        local = self._channels.get(channel)
        if local is None:
            local = self._channels[channel] = _LocalChannel()
        # In the set before the lock: a concurrent _detach then keeps the
        # channel; deliveries before the subscription is in force are harmless.
        local.sessions[session] = None
        try:
            async with local.lock:
                if not local.subscribed:
                    await self.backplane.subscribe(channel, self._on_delivery)
                    local.subscribed = True
        except BaseException:
            local.sessions.pop(session, None)
            if not local.sessions and not local.subscribed and self._channels.get(channel) is local:
                del self._channels[channel]
            raise

    async def _detach(self, channel: str, session: ChannelSession) -> None:
        local = self._channels.get(channel)
        if local is None:
            return
        local.sessions.pop(session, None)
        async with local.lock:
            if local.sessions:
                return
            try:
                if local.subscribed:
                    local.subscribed = False
                    await self.backplane.unsubscribe(channel, self._on_delivery)
            finally:
                if not local.sessions and self._channels.get(channel) is local:
                    del self._channels[channel]

    def _on_delivery(self, channel: str, delivery: Delivery) -> None:
        local = self._channels.get(channel)
        if local is None:
            return
        if isinstance(delivery, Reset) and local.sessions:
            logger.warning(
                "channels: %r may have lost publications (broker outage); closing %d session(s) with 4002",
                channel,
                len(local.sessions),
            )
        for session in list(local.sessions):
            session._deliver(channel, delivery)


@dataclass(eq=False)
class _Subscription:
    channel: str
    namespace: Namespace
    # Deliveries held while the history is read; None once live.
    buffer: list[Delivery] | None = field(default_factory=list)
    offset: int = 0
    epoch: str = ""


class ChannelSession:
    """The channels protocol on one connection; made and run by :meth:`Hub.handler`."""

    def __init__(self, hub: Hub, connection: Any) -> None:
        self.hub = hub
        self.connection = connection
        self.client = ClientInfo(str(connection.id), _subject(connection.identity))
        self._subscriptions: dict[str, _Subscription] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closing: CloseCode | None = None
        self._writer: asyncio.Task[None] | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ChannelSession {self.client.client} channels={len(self._subscriptions)}>"

    async def run(self) -> None:
        """Read and answer commands until the connection closes; then clean up."""
        hub = self.hub
        hub._sessions.add(self)
        hub.stats.sessions += 1
        self._writer = asyncio.create_task(self._write())
        try:
            if hub._closing:
                self.disconnect(CLOSE_SHUTDOWN)
            elif hub.require_subprotocol and self.connection.subprotocol != SUBPROTOCOL:
                self.disconnect(CloseCode(4008, f"use the subprotocol {SUBPROTOCOL}", False))
            await self._read()
        finally:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            if self._close_task is not None:
                await asyncio.gather(self._close_task, return_exceptions=True)
            try:
                await self._cleanup()
            finally:
                hub._sessions.discard(self)
                hub.stats.sessions -= 1
                self._done.set()

    async def wait_closed(self) -> None:
        """Wait until :meth:`run` is over."""
        await self._done.wait()

    def disconnect(self, close: CloseCode, *, flush: bool = False) -> None:
        """Close the connection with ``close``'s code and reason (once; later calls do nothing).

        With ``flush``, what is queued is sent first; otherwise it is dropped
        and a send blocked on a peer that does not read is abandoned (the frame
        it wrote stays whole). Nothing more is queued either way.
        """
        if self._closing is not None:
            return
        self._closing = close
        writer = self._writer
        if flush and writer is not None and not writer.done():
            self._wakeup.set()  # the writer sends the rest, then closes
            return
        self._queue.clear()
        if writer is not None:
            writer.cancel()
        self._start_close()

    def _start_close(self) -> None:
        close = self._closing
        if close is not None and self._close_task is None:
            self._close_task = asyncio.ensure_future(self.connection.close(close.code, close.reason))

    def _is_closing(self) -> bool:
        # A method, so that type narrowing does not outlive an await.
        return self._closing is not None

    async def _read(self) -> None:
        # Until the connection is closed; once closing, messages are ignored.
        limits = self.hub.limits.wire
        try:
            while True:
                message = await self.connection.recv()
                if self._is_closing():
                    continue
                try:
                    command = parse_command(message, limits)
                except ProtocolViolation as exc:
                    logger.info("%r: %s", self, exc)
                    self.disconnect(CLOSE_BAD_PROTOCOL)
                    continue
                except CommandError as exc:
                    self._send(error_reply(exc.id, exc.code, exc.message))
                    continue
                try:
                    await self._dispatch(command)
                except CommandError as exc:
                    self._send(error_reply(exc.id, exc.code, exc.message))
                except ConnectionClosed:
                    raise
                except Exception:
                    # A bug here or in a backplane: answer 100 and serve on.
                    logger.exception("%r: %s failed", self, type(command).__name__.lower())
                    self._send(error_reply(command.id, ErrorCode.INTERNAL))
        except ConnectionClosed:
            pass

    async def _dispatch(self, command: Command) -> None:
        if isinstance(command, Ping):
            self._send(result_reply(command.id))
        elif isinstance(command, Subscribe):
            await self._subscribe(command)
        elif isinstance(command, Unsubscribe):
            await self._unsubscribe(command)
        elif isinstance(command, Publish):
            await self._publish(command)
        elif isinstance(command, History):
            await self._history(command)
        else:
            await self._presence(command)

    # -- commands -----------------------------------------------------------------

    def _namespace(self, id: int, channel: str) -> Namespace:
        namespace = self.hub.namespaces.get(channel)
        if namespace is None:
            raise CommandError(id, ErrorCode.UNKNOWN_CHANNEL, "no namespace for this channel")
        return namespace

    async def _check(self, id: int, permission: Permission, channel: str, token: str | None) -> None:
        identity = self.connection.identity
        if not await allowed(permission, identity, channel, token=token, token_key=self.hub.token_key):
            raise CommandError(id, ErrorCode.PERMISSION_DENIED)

    async def _subscribe(self, command: Subscribe) -> None:
        id, channel = command.id, command.channel
        namespace = self._namespace(id, channel)
        if channel in self._subscriptions:
            raise CommandError(id, ErrorCode.ALREADY_SUBSCRIBED)
        if len(self._subscriptions) >= self.hub.limits.max_channels:
            raise CommandError(id, ErrorCode.LIMIT_EXCEEDED, "too many channels on this connection")
        await self._check(id, namespace.subscribe, channel, command.token)
        subscription = _Subscription(channel, namespace)
        self._subscriptions[channel] = subscription
        hub = self.hub
        hub.stats.subscriptions += 1
        try:
            await hub._attach(channel, self)
            if command.since is None:
                history = await hub.backplane.history(channel, limit=0)
                recovered = False
            else:
                since = StreamPosition(command.since.offset, command.since.epoch)
                history = await hub.backplane.history(channel, since=since)
                recovered = history.recovered
        except Exception as exc:
            del self._subscriptions[channel]
            hub.stats.subscriptions -= 1
            await self._detach_quietly(channel)
            if not isinstance(exc, BackplaneError):
                raise
            logger.warning("%r: subscribing to %r failed: %s", self, channel, exc)
            raise CommandError(id, ErrorCode.UNAVAILABLE, "the backplane is unavailable") from None
        publications = list(history.publications)
        position = history.position
        subscription.epoch = position.epoch
        subscription.offset = position.offset
        self._send(
            result_reply(
                id,
                history_result(
                    [(p.offset, p.data) for p in publications], position.offset, position.epoch, recovered
                ),
            )
        )
        buffered, subscription.buffer = subscription.buffer or [], None
        for delivery in buffered:
            self._push(subscription, delivery)
        if namespace.presence:
            try:
                await hub.backplane.presence_add(channel, self.client, announce=namespace.join_leave)
            except BackplaneError as exc:
                logger.warning("%r: presence in %r failed: %s", self, channel, exc)

    async def _unsubscribe(self, command: Unsubscribe) -> None:
        subscription = self._subscriptions.pop(command.channel, None)
        if subscription is None:
            raise CommandError(command.id, ErrorCode.NOT_SUBSCRIBED)
        self.hub.stats.subscriptions -= 1
        await self._leave(subscription)
        self._send(result_reply(command.id))

    async def _publish(self, command: Publish) -> None:
        id, channel = command.id, command.channel
        namespace = self._namespace(id, channel)
        await self._check(id, namespace.publish, channel, command.token)
        try:
            self.hub._check_started()
            publication = await self.hub.backplane.publish(
                channel, command.data, idempotency_key=command.idempotency_key, retention=namespace.retention
            )
        except BackplaneError as exc:
            logger.warning("%r: publishing to %r failed: %s", self, channel, exc)
            raise CommandError(
                id, ErrorCode.UNAVAILABLE, "the backplane is unavailable; not published"
            ) from None
        self.hub.stats.publications += 1
        self._send(result_reply(id, {"offset": publication.offset, "epoch": publication.epoch}))

    async def _history(self, command: History) -> None:
        id, channel = command.id, command.channel
        namespace = self._namespace(id, channel)
        await self._check(id, namespace.history_permission, channel, command.token)
        limit = command.limit if command.limit is not None else self.hub.limits.wire.max_history_limit
        since = None if command.since is None else StreamPosition(command.since.offset, command.since.epoch)
        try:
            self.hub._check_started()
            history = await self.hub.backplane.history(channel, since=since, limit=limit)
        except BackplaneError as exc:
            logger.warning("%r: history of %r failed: %s", self, channel, exc)
            raise CommandError(id, ErrorCode.UNAVAILABLE, "the backplane is unavailable") from None
        pubs = [(p.offset, p.data) for p in history.publications]
        position = history.position
        self._send(result_reply(id, history_result(pubs, position.offset, position.epoch, history.recovered)))

    async def _presence(self, command: Presence) -> None:
        id, channel = command.id, command.channel
        namespace = self._namespace(id, channel)
        if not namespace.presence:
            raise CommandError(id, ErrorCode.BAD_REQUEST, "presence is off in this namespace")
        await self._check(id, namespace.presence_permission, channel, command.token)
        try:
            self.hub._check_started()
            clients = await self.hub.backplane.presence(channel)
        except BackplaneError as exc:
            logger.warning("%r: presence of %r failed: %s", self, channel, exc)
            raise CommandError(id, ErrorCode.UNAVAILABLE, "the backplane is unavailable") from None
        self._send(result_reply(id, {"clients": [{"client": c.client, "user": c.user} for c in clients]}))

    # -- deliveries ---------------------------------------------------------------

    def _deliver(self, channel: str, delivery: Delivery) -> None:
        # Called by the hub for each delivery of a channel this session is in.
        subscription = self._subscriptions.get(channel)
        if subscription is None or self._closing is not None:
            return
        if isinstance(delivery, Reset):
            # The backplane cannot vouch for continuity: the client must resume
            # from its position and learn whether anything was lost.
            self.disconnect(CLOSE_INSUFFICIENT_STATE, flush=True)
            return
        if subscription.buffer is not None:
            subscription.buffer.append(delivery)
            return
        self._push(subscription, delivery)

    def _push(self, subscription: _Subscription, delivery: Delivery) -> None:
        channel = subscription.channel
        if isinstance(delivery, Publication):
            if delivery.epoch == subscription.epoch:
                if delivery.offset <= subscription.offset:
                    return  # already sent, in the history or before
                if delivery.offset != subscription.offset + 1:
                    # Publications went missing between the broker and us:
                    # the client must resume from its position.
                    self.disconnect(CLOSE_INSUFFICIENT_STATE, flush=True)
                    return
            elif delivery.offset != 1:
                # A new stream that already moved on without us.
                self.disconnect(CLOSE_INSUFFICIENT_STATE, flush=True)
                return
            subscription.epoch, subscription.offset = delivery.epoch, delivery.offset
            self._send(pub_push(channel, delivery.offset, delivery.epoch, delivery.data))
        elif isinstance(delivery, Join):
            self._send(join_push(channel, delivery.info.client, delivery.info.user))
        elif isinstance(delivery, Leave):
            self._send(leave_push(channel, delivery.info.client, delivery.info.user))

    # -- the outgoing queue ---------------------------------------------------------

    def _send(self, text: str) -> None:
        if self._closing is not None:
            return
        if len(self._queue) >= self.hub.limits.queue_size:
            self.hub.stats.slow_consumers += 1
            logger.info("%r: outgoing queue full, disconnecting a slow consumer", self)
            self.disconnect(CLOSE_SLOW_CONSUMER)
            return
        self._queue.append(text)
        self._wakeup.set()

    async def _write(self) -> None:
        queue, connection, wakeup = self._queue, self.connection, self._wakeup
        try:
            while True:
                while queue:
                    await connection.send(queue.popleft())
                if self._is_closing():
                    break
                wakeup.clear()
                await wakeup.wait()
        except ConnectionClosed:
            return
        self._start_close()

    # -- leaving --------------------------------------------------------------------

    async def _leave(self, subscription: _Subscription) -> None:
        channel, namespace = subscription.channel, subscription.namespace
        await self._detach_quietly(channel)
        if namespace.presence:
            try:
                await self.hub.backplane.presence_remove(channel, self.client, announce=namespace.join_leave)
            except BackplaneError as exc:
                logger.warning("%r: leaving presence of %r failed: %s", self, channel, exc)

    async def _detach_quietly(self, channel: str) -> None:
        try:
            await self.hub._detach(channel, self)
        except BackplaneError as exc:
            logger.warning("%r: unsubscribing from %r failed: %s", self, channel, exc)

    async def _cleanup(self) -> None:
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        self.hub.stats.subscriptions -= len(subscriptions)
        for subscription in subscriptions:
            await self._leave(subscription)


def _subject(identity: Any) -> str | None:
    subject = getattr(identity, "subject", None)
    return subject if isinstance(subject, str) else None
