"""The asyncio connection: an :class:`asyncio.Protocol` that drives a sans-I/O core.

Bytes from the transport go into the core in :meth:`Connection.data_received`;
the events that come out are handled right there, without a task per message:
messages go to a queue that :meth:`Connection.recv` reads, pongs resolve the
futures :meth:`Connection.ping` returned. Whatever the core queues to send is
written at once.

Flow control works both ways. When the receive queue holds ``max_queue``
messages, the transport stops reading until the application catches up;
:meth:`Connection.send` waits while the transport's write buffer is above
``write_limit``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Protocol, Union, cast

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidState,
    WebSocketError,
)
from ..protocol.connection import Connection as _Core
from ..protocol.connection import State
from ..protocol.deflate import DeflateOptions
from ..protocol.events import (
    Accept,
    BytesMessage,
    Close,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from ..protocol.limits import Limits
from ..tls import PeerCertificate

__all__ = [
    "Connection",
    "Data",
    "DataLike",
    "Compression",
    "DEFAULT_MAX_SIZE",
    "State",
    "MessageLimiter",
    "PingLimiter",
]

#: A received message: ``str`` for text, ``bytes`` for binary.
Data = Union[str, bytes]

#: What :meth:`Connection.send` accepts as one message or one fragment.
DataLike = Union[str, bytes, bytearray, memoryview]

#: ``"deflate"`` (permessage-deflate with default options), options of one's
#: own, or None for no compression.
Compression = Union[str, DeflateOptions, None]

#: The default limit on the size of a received message.
DEFAULT_MAX_SIZE = 2**20

# The states as module constants: reading State.OPEN goes through the
# Enum metaclass's attribute hook, which costs as much as a function call
# on the hot paths.
_CONNECTING = State.CONNECTING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

_BYTES_LIKE = (bytes, bytearray, memoryview)
# What send() writes at once as one message (exact types: subclasses take the long way).
_WHOLE_TYPES = frozenset({str, bytes, bytearray, memoryview})

_UNREAD = object()


class MessageLimiter(Protocol):
    """A per-connection limit on received messages, such as
    :class:`wsskit.guards.MessageRateLimiter`."""

    def on_message(self, size: int) -> str | None:
        """Count a message of ``size`` bytes; return None, or why to close with 1008."""


class PingLimiter(Protocol):
    """Which received Pings get a Pong, such as :class:`wsskit.guards.PingFloodGuard`."""

    def allow(self) -> bool:
        """Count a received Ping; return whether to answer it."""


# A peer that floods us with pings while it reads nothing makes the core queue
# pongs we cannot write. Once this many bytes of such replies pile up behind a
# paused write buffer (or the write limit, if larger), reading stops until the
# buffer drains. Data the application sends is bounded by send() itself.
_MIN_REPLY_BACKLOG = 2**16


class _MessageWaiter:
    """What :meth:`Connection.recv` awaits while no message is queued: a small future.

    An asyncio Task waits on any object that follows the future protocol
    (what :func:`asyncio.isfuture` recognises), not only on
    :class:`asyncio.Future`. This one differs in one way: :meth:`wake` with
    ``now=True``, which ``data_received()`` uses, resumes the waiting task at
    once, inside that callback, when no other task is running.
    ``Future.set_result()`` would schedule the resumption for the loop's
    next iteration instead: one more poll of the selector and one more
    handle per message, a good part of an echo's cost on the asyncio loop.
    Cancellation and every other wake-up go through ``loop.call_soon()``, as
    with a Future.

    A waiter whose task was resumed in place is used again for the next wait:
    nothing else can hold it by then.
    """

    __slots__ = ("_asyncio_future_blocking", "_callbacks", "_cancel_message", "_loop", "_state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._asyncio_future_blocking = False
        self._loop = loop
        self._state = _PENDING
        self._callbacks: list[tuple[Callable[[Any], object], contextvars.Context]] = []
        self._cancel_message: Any = None

    def __repr__(self) -> str:
        return f"<_MessageWaiter {('pending', 'done', 'cancelled', 'done')[self._state]}>"

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise self._cancelled_error()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("Result is not ready.")

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self._state == _PENDING:
            self._callbacks.append((fn, context))
        else:
            self._loop.call_soon(fn, self, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        kept = [(f, context) for f, context in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._cancel_message = msg
        self._schedule_callbacks()
        return True

    def wake(self, *, now: bool = False) -> None:
        """Complete the waiter; with ``now``, run the waiting task before returning if possible."""
        if self._state != _PENDING:
            return
        # A task cannot be entered while another one runs (asyncio raises).
        if not now or asyncio.current_task(self._loop) is not None:
            self._state = _DONE
            self._schedule_callbacks()
            return
        self._state = _DONE_IN_PLACE
        callbacks = self._callbacks
        self._callbacks = []
        for fn, context in callbacks:
            context.run(fn, self)

    def _schedule_callbacks(self) -> None:
        callbacks = self._callbacks
        self._callbacks = []
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    def _cancelled_error(self) -> asyncio.CancelledError:
        if self._cancel_message is None:
            return asyncio.CancelledError()
        return asyncio.CancelledError(self._cancel_message)

    def __await__(self) -> Generator[Any, None, None]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self  # the Task adds its wake-up with add_done_callback
        state = self._state
        if state == _PENDING:
            raise RuntimeError("await wasn't used with future")
        if state == _CANCELLED:
            raise self._cancelled_error()

    __iter__ = __await__


# The states of a _MessageWaiter; _DONE_IN_PLACE: done, and its callbacks ran.
_PENDING = 0
_DONE = 1
_CANCELLED = 2
_DONE_IN_PLACE = 3


class Connection(asyncio.Protocol):
    """A WebSocket connection, client or server side.

    Use :class:`~wsskit.asyncio.client.ClientConnection` (from
    :func:`~wsskit.asyncio.client.connect`) or
    :class:`~wsskit.asyncio.server.ServerConnection` (given to a
    :func:`~wsskit.asyncio.server.serve` handler); this base class holds what
    both share.

    Receive with :meth:`recv` or ``async for message in connection``; send
    with :meth:`send`; end with :meth:`close`.
    """

    # Slots keep an idle connection small; "__dict__" leaves room for the
    # attributes of subclasses and of guards (and for tests' patches).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_abort_handle",
        "_closed",
        "_closing_transport",
        "_core",
        "_drain_waiters",
        "_eof",
        "_expire_handle",
        "_failure_handle",
        "_failure_waiting",
        "_fragmenting",
        "_idle_handle",
        "_keepalive_handle",
        "_last_activity",
        "_loop",
        "_lost",
        "_low_water",
        "_max_queue",
        "_message_limiter",
        "_messages",
        "_over_rate",
        "_peer_certificate",
        "_ping_limiter",
        "_pings",
        "_queue_full",
        "_queue_limit",
        "_reading_paused",
        "_recv_waiter",
        "_replies_stuck",
        "_reply_backlog",
        "_transport",
        "_write_handle",
        "_write_limit",
        "_writing_paused",
        "bytes_received",
        "bytes_sent",
        "close_timeout",
        "id",
        "identity",
        "idle_timeout",
        "latency",
        "local_address",
        "logger",
        "messages_received",
        "messages_sent",
        "ping_interval",
        "ping_timeout",
        "remote_address",
        "request",
        "response",
        "write_timeout",
    )

    def __init__(
        self,
        core: _Core,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        max_queue: int | None,
        write_limit: int,
        logger: logging.Logger,
        write_timeout: float | None = None,
        idle_timeout: float | None = None,
        message_limiter: MessageLimiter | None = None,
        ping_limiter: PingLimiter | None = None,
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be at least 1, or None for no limit")
        if write_limit < 0:
            raise ValueError("write_limit must not be negative")
        self._core = core
        # Whole messages come out of the core as plain str and bytes.
        core.plain_messages = True
        self._loop = asyncio.get_running_loop()
        # Over its rate a peer is closed with 1008 and its later messages
        # are dropped; Pings over theirs go unanswered (the connection stays).
        self._message_limiter = message_limiter
        self._over_rate = False
        self._ping_limiter = ping_limiter
        if ping_limiter is not None:
            core.auto_pong = False
        #: A unique id, handy in logs.
        self.id: uuid.UUID = uuid.uuid4()
        self.logger = logger
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_timeout = write_timeout
        self.idle_timeout = idle_timeout
        self._max_queue = max_queue
        # max_queue as a number, for the hot path's one comparison.
        self._queue_limit = sys.maxsize if max_queue is None else max_queue
        self._low_water = 0 if max_queue is None else max_queue // 4
        self._write_limit = write_limit
        #: The opening handshake's request: received on a server, sent on a client.
        self.request: Request | None = None
        #: The server's answer, on a client once the handshake succeeded.
        self.response: Accept | None = None
        #: The round-trip time of the last ping answered, in seconds.
        self.latency: float = 0.0
        #: Who is on the other side, as a guard established it (None: unknown).
        self.identity: Any = None
        # Parsed on first use, from the TLS handshake (see peer_certificate).
        self._peer_certificate: object = _UNREAD
        self._expire_handle: asyncio.TimerHandle | None = None
        self.remote_address: Any = None
        self.local_address: Any = None
        self._transport: asyncio.Transport | None = None
        self._messages: collections.deque[Data] = collections.deque()
        self._recv_waiter: _MessageWaiter | None = None
        # Reading is paused when the queue is full or when replies pile up.
        self._queue_full = False
        self._replies_stuck = False
        self._reading_paused = False
        self._reply_backlog = 0
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Ping payload -> (future resolved with the latency, time sent), in
        # the order sent.
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._keepalive_handle: asyncio.TimerHandle | None = None
        # Cuts off a peer that stops reading (see write_timeout).
        self._write_handle: asyncio.TimerHandle | None = None
        # Idle timeout: the last message either way, checked by one timer.
        self._last_activity = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        # A peer's violation waiting until the messages before it are read.
        self._failure_handle: asyncio.TimerHandle | None = None
        self._failure_waiting = False
        self._abort_handle: asyncio.TimerHandle | None = None
        # Set while send() streams a fragmented message; other sends wait.
        self._fragmenting: asyncio.Future[None] | None = None
        self._eof = False
        self._closing_transport = False
        self._lost = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        #: Traffic so far, for metrics: whole messages, and bytes on the wire
        #: (frames; bytes_received also counts the handshake).
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0

    # -- properties ---------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        """The underlying transport; raises :class:`InvalidState` before it is connected."""
        if self._transport is None:
            raise InvalidState("the connection has no transport yet")
        return self._transport

    @property
    def ssl_object(self) -> Any:
        """The :class:`ssl.SSLObject` of a TLS connection, else None."""
        return None if self._transport is None else self._transport.get_extra_info("ssl_object")

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        """The peer's TLS certificate, if it sent one that the handshake verified.

        On a server, the client certificate of a mutual-TLS connection
        (subject, subjectAltNames, SHA-256 fingerprint); None without TLS,
        without a certificate, or with one the context did not verify.
        """
        if self._peer_certificate is _UNREAD:
            ssl_object = self.ssl_object
            self._peer_certificate = (
                None if ssl_object is None else PeerCertificate.from_ssl_object(ssl_object)
            )
        return cast("PeerCertificate | None", self._peer_certificate)

    @property
    def state(self) -> State:
        """The protocol state: CONNECTING, OPEN, CLOSING or CLOSED."""
        return self._core.state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._core.subprotocol

    @property
    def extensions(self) -> tuple[str, ...]:
        """The negotiated extensions, as header values."""
        return self._core.extensions

    @property
    def close_code(self) -> int | None:
        """How the connection closed: the peer's close code, ours when we failed
        it, 1006 when no Close frame was exchanged; None while not closed."""
        if self._core.state is _CLOSED or self._lost:
            return self._core.close_status()[0]
        return None

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with :attr:`close_code`; None while not closed."""
        if self._core.state is _CLOSED or self._lost:
            return self._core.close_status()[1]
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.name} {self.remote_address!r}>"

    # -- receiving ----------------------------------------------------------------

    async def recv(self) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Raises the :class:`~wsskit.exceptions.ConnectionClosed` subclass that
        fits the close once the connection is closed and every message
        received before has been returned, and :class:`InvalidState` when
        another task is already waiting in :meth:`recv`.
        """
        messages = self._messages
        while not messages:
            # No future when a message is queued already: the common case
            # under load costs no trip through the event loop.
            await self._message_waiter()
        message = messages.popleft()
        if self._queue_full:
            self._check_queue()
        return message

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over messages until the connection closes (``async for``).

        Ends quietly on a normal close; raises
        :class:`~wsskit.exceptions.ConnectionClosedError` otherwise.
        """
        return self

    async def __anext__(self) -> Data:
        """The next message, for ``async for``: :meth:`recv`, with a normal close as the end."""
        # recv() inlined: one coroutine per message rather than two.
        messages = self._messages
        while not messages:
            try:
                await self._message_waiter()
            except ConnectionClosedOK:
                raise StopAsyncIteration from None
        message = messages.popleft()
        if self._queue_full:
            self._check_queue()
        return message

    def _message_waiter(self) -> _MessageWaiter:
        # A future resolved when a message arrives or the connection closes;
        # raises ConnectionClosed once it is closed, InvalidState when
        # another task waits already.
        waiter = self._recv_waiter
        if waiter is not None and waiter._state == _PENDING:
            raise InvalidState("recv() is already waiting in another task")
        core = self._core
        if core.failure_pending:
            # Every message before the peer's violation was read (and, the
            # handler being back here, answered): fail now.
            self._commit_failure()
        if self._lost or core.state is _CLOSED:
            raise self._closed_error()
        if waiter is not None and waiter._state == _DONE_IN_PLACE:
            # Its task was resumed in place: nothing else holds it (see _MessageWaiter).
            waiter._state = _PENDING
        else:
            waiter = self._recv_waiter = _MessageWaiter(self._loop)
        return waiter

    def _check_queue(self) -> None:
        # Resume reading once the application has caught up with a full queue.
        if len(self._messages) <= self._low_water:
            self._queue_full = False
            self._update_reading()

    # -- sending ------------------------------------------------------------------

    async def send(self, message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike]) -> None:
        """Send one message.

        ``str`` goes as a text message, a bytes-like object as a binary one.
        An iterable or async iterable of fragments (all ``str`` or all
        bytes-like) goes as one fragmented message; other sends wait until it
        is complete. Returns once the message is written to the transport and
        its write buffer is below ``write_limit``.

        Raises :class:`~wsskit.exceptions.ConnectionClosed` when the
        connection is closing or closed, :class:`TypeError` for anything else
        or for fragments of mixed types (after failing the connection with
        1011 when part of the message was sent already).
        """
        core = self._core
        ready = (
            core.state is _OPEN
            and self._fragmenting is None
            and not self._writing_paused
            and type(message) in _WHOLE_TYPES
            and self._idle_handle is None
            and not self._lost
        )
        if ready:
            # The fast path: one whole message, a transport ready to take it.
            data = core.send_message(message)  # type: ignore[arg-type]
            self.messages_sent += 1
            transport = self._transport
            assert transport is not None
            if len(data) == 1:
                frame = data[0]
                self.bytes_sent += len(frame)
                transport.write(frame)
            else:
                self.bytes_sent += sum(map(len, data))
                transport.writelines(data)
            if self._writing_paused:
                await self._drain()
            return
        await self._wait_turn()
        if isinstance(message, (str, *_BYTES_LIKE)):
            self._write_message(message)
        elif isinstance(message, Mapping):
            raise TypeError("a mapping is not a message; send str, bytes or an iterable of fragments")
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message))
            return
        elif isinstance(message, AsyncIterable):
            await self._send_async_fragments(message)
            return
        else:
            raise TypeError(f"cannot send {type(message).__name__}; send str, bytes or fragments")
        if self._writing_paused:
            await self._drain()

    async def _wait_turn(self) -> None:
        # Wait until no fragmented message is being sent and the write
        # buffer is under its limit, both at once: after waiting for one,
        # the other may have changed (another task took its turn meanwhile),
        # so check both again. Waiting on a full buffer before writing also
        # keeps many tasks sending at once from piling messages onto it.
        while True:
            if self._fragmenting is not None:
                await asyncio.shield(self._fragmenting)
            elif self._writing_paused:
                await self._drain()
            else:
                return

    async def _send_fragments(self, fragments: Iterator[DataLike]) -> None:
        # Look one fragment ahead so the last one carries FIN: no empty frame.
        try:
            previous = next(fragments)
        except StopIteration:
            return
        event_type = _event_type(previous)
        self._fragmenting = self._loop.create_future()
        started = False
        try:
            for fragment in fragments:
                _check_fragment(event_type, fragment)
                self._send_event(event_type(previous, fin=False))  # type: ignore[arg-type]
                started = True
                if self._writing_paused:
                    await self._drain()
                previous = fragment
            self._send_event(event_type(previous))  # type: ignore[arg-type]
        except BaseException:
            if started:
                self._fail_fragmented()
            raise
        finally:
            self._end_fragmenting()

    async def _send_async_fragments(self, fragments: AsyncIterable[DataLike]) -> None:
        # Each fragment goes as soon as it is produced (the source may be a
        # slow stream); an empty final frame then ends the message.
        iterator = fragments.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return
        event_type = _event_type(first)
        # Another send may have begun while the source produced its first
        # fragment: wait for the turn again before claiming the connection.
        await self._wait_turn()
        self._fragmenting = self._loop.create_future()
        started = False
        try:
            self._send_event(event_type(first, fin=False))  # type: ignore[arg-type]
            started = True
            async for fragment in iterator:
                _check_fragment(event_type, fragment)
                if self._writing_paused:
                    await self._drain()
                self._send_event(event_type(fragment, fin=False))  # type: ignore[arg-type]
            self._send_event(event_type("" if event_type is TextMessage else b""))  # type: ignore[arg-type]
            if self._writing_paused:
                await self._drain()
        except BaseException:
            if started:
                self._fail_fragmented()
            raise
        finally:
            self._end_fragmenting()

    def _fail_fragmented(self) -> None:
        # A message cut short cannot be finished or taken back: RFC 6455 has no
        # way to abort a message but closing the connection.
        if self._core.state is _OPEN:
            self.logger.debug("%r: fragmented message interrupted; failing the connection", self)
            self._fail(1011, "fragmented message interrupted")

    def _end_fragmenting(self) -> None:
        fragmenting = self._fragmenting
        self._fragmenting = None
        if fragmenting is not None and not fragmenting.done():
            fragmenting.set_result(None)

    def _write_broadcast(self, message: DataLike, frame: bytes | None, size: int) -> str | None:
        # One connection of wsskit.asyncio.broadcast(): write ``message``
        # now, as ``frame`` (the shared frame of ``size`` payload bytes, if
        # any) when the core says it fits. Returns None once written, else
        # why not: "closed" (not open), "slow" (write buffer over its
        # limit), "fragmenting" (sending a fragmented message).
        core = self._core
        if core.state is not _OPEN or self._lost or self._transport is None:
            return "closed"
        if self._writing_paused:
            return "slow"
        if self._fragmenting is not None:
            return "fragmenting"
        self.messages_sent += 1
        if frame is not None and core.sends_plain_frames(size):
            self.bytes_sent += len(frame)
            self._transport.write(frame)
        else:
            data = core.send_message(message)
            self.bytes_sent += sum(map(len, data))
            if len(data) == 1:
                self._transport.write(data[0])
            else:
                self._transport.writelines(data)
        if self._idle_handle is not None:
            self._last_activity = self._loop.time()
        return None

    def _write_message(self, message: DataLike) -> None:
        # Frame one whole message and write it; raises ConnectionClosed once
        # a Close was sent or received.
        core = self._core
        state = core.state
        if state is not _OPEN and state is not _CONNECTING:
            raise self._closed_error()
        data = core.send_message(message)  # raises InvalidState before the handshake
        self.messages_sent += 1
        self.bytes_sent += sum(map(len, data))
        if self._idle_handle is not None:
            self._last_activity = self._loop.time()
        if not self._lost:
            transport = self._transport
            assert transport is not None
            if len(data) == 1:
                transport.write(data[0])
            else:
                transport.writelines(data)

    def _send_event(self, event: Event) -> None:
        # Every outgoing frame goes through here; raises ConnectionClosed
        # once a Close was sent or received.
        core = self._core
        if core.state is not _OPEN and core.state is not _CONNECTING:
            raise self._closed_error()
        core.send(event)
        if (type(event) is TextMessage or type(event) is BytesMessage) and event.fin:
            self.messages_sent += 1
        if self._idle_handle is not None and (type(event) is TextMessage or type(event) is BytesMessage):
            self._last_activity = self._loop.time()
        data = core.data_to_send()
        self.bytes_sent += sum(map(len, data))
        if data and not self._lost:
            self.transport.writelines(data)

    async def _drain(self) -> None:
        # Wait until the transport's write buffer is back under its low-water mark.
        while self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._lost:
            raise self._closed_error()

    def ping(self, data: DataLike | None = None) -> asyncio.Future[float]:
        """Send a Ping; return a future for the round-trip time in seconds.

        ``latency = await connection.ping()`` waits for the matching Pong.
        Without ``data`` a random 4-byte payload is used; ``str`` data is
        encoded as UTF-8. A Pong also answers every earlier ping (RFC 6455
        §5.5.3 lets a peer answer only the most recent one).

        Raises :class:`~wsskit.exceptions.ConnectionClosed` when the
        connection is closing or closed, :class:`InvalidState` when a ping
        with the same payload is still waiting, and
        :class:`~wsskit.exceptions.LocalProtocolError` for more than 125
        bytes. The future fails with ``ConnectionClosed`` if the connection
        closes first.
        """
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise InvalidState("a ping with the same data is already waiting for its pong")
        self._send_event(Ping(payload))
        waiter: asyncio.Future[float] = self._loop.create_future()
        # A clock of its own: uvloop's loop.time() counts whole milliseconds,
        # and a round trip on a fast network takes less than one.
        self._pings[payload] = (waiter, time.perf_counter())
        return waiter

    async def pong(self, data: DataLike = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat).

        Raises :class:`~wsskit.exceptions.ConnectionClosed` when the
        connection is closing or closed and
        :class:`~wsskit.exceptions.LocalProtocolError` for more than 125 bytes.
        """
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._send_event(Pong(payload))

    # -- closing ------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and wait for the transport to close.

        Sends a Close frame with ``code`` and ``reason`` (unless one was
        sent or the connection is closed), waits for the peer's Close and the
        end of the TCP connection, and aborts the transport if that takes
        more than ``close_timeout``. Does nothing more when already closed.

        Raises :class:`~wsskit.exceptions.LocalProtocolError` for a close
        code one may not send or a reason longer than 123 bytes in UTF-8.
        """
        self._start_close(code, reason)
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the transport is closed (never raises)."""
        await asyncio.shield(self._closed)

    def _start_close(self, code: int, reason: str) -> None:
        # Send Close now; the close timer bounds the rest of the handshake.
        core = self._core
        if self._transport is None or self._lost:
            return
        if core.state is _OPEN:
            core.send(Close(code, reason))
            self._flush()
        elif core.state is _CONNECTING:
            core.fail(code, reason)
        self._arm_abort_timer()
        self._check_close()

    def _fail(self, code: int, reason: str) -> None:
        # Our own decision to end the connection now (keepalive timeout,
        # internal error): send Close if we can and close the transport.
        core = self._core
        core.fail(code, reason)
        self._flush()
        self._arm_abort_timer()
        self._check_close()

    def _closed_error(self) -> ConnectionClosed:
        # The exception recv() and send() raise once the connection is over.
        return self._core.closed_error()

    def _arm_abort_timer(self) -> None:
        if self._abort_handle is None and self.close_timeout is not None and not self._lost:
            self._abort_handle = self._loop.call_later(self.close_timeout, self._abort_on_timeout)

    def _abort_on_timeout(self) -> None:
        self._abort_handle = None
        if self._transport is not None and not self._lost:
            self.logger.debug("%r: closing timed out; aborting the transport", self)
            self._transport.abort()

    def _check_close(self) -> None:
        # Close the transport when the core says so; a client whose closing
        # handshake is over waits close_timeout for the server to close TCP
        # (RFC 6455 §7.1.1), then aborts.
        if self._closing_transport or self._lost or self._transport is None:
            return
        core = self._core
        if core.close_transport:
            self._closing_transport = True
            self._transport.close()
            self._arm_abort_timer()
        elif core.state is _CLOSED:
            self._arm_abort_timer()

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by asyncio once the transport (and TLS) is up."""
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=self._write_limit)
        self.remote_address = transport.get_extra_info("peername")
        self.local_address = transport.get_extra_info("sockname")
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Called by asyncio with bytes from the network: feed them to the core."""
        self.bytes_received += len(data)
        try:
            self._core.receive_data(data)
            self._process_events(received=True)
        except Exception:
            self._internal_error()

    def eof_received(self) -> bool | None:
        """Called by asyncio when the peer closed its side; the transport then closes."""
        self._eof = True
        try:
            self._core.receive_eof()
            self._process_events()
        except Exception:
            self._internal_error()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio when the transport is closed: wake every waiter."""
        self._lost = True
        core = self._core
        if not self._eof and core.state is not _CLOSED:
            self._eof = True
            try:
                core.receive_eof()
            except Exception:
                self.logger.exception("%r: error while closing the protocol core", self)
        core.events_received()
        core.data_to_send()
        for handle in (
            self._keepalive_handle,
            self._abort_handle,
            self._failure_handle,
            self._write_handle,
            self._idle_handle,
            self._expire_handle,
        ):
            if handle is not None:
                handle.cancel()
        self._keepalive_handle = self._abort_handle = self._failure_handle = None
        self._write_handle = self._idle_handle = self._expire_handle = None
        self._writing_paused = False
        self._wake_drain_waiters()
        self._wake_receiver()
        if self._pings:
            error = self._closed_error()
            for waiter, _ in self._pings.values():
                if not waiter.done():
                    waiter.set_exception(error)
            self._pings.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        """Called by asyncio when the write buffer went over ``write_limit``."""
        self._writing_paused = True
        if self.write_timeout is not None and self._write_handle is None and not self._lost:
            self._write_handle = self._loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        """Called by asyncio when the write buffer drained: wake the senders."""
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self._writing_paused = False
        self._reply_backlog = 0
        self._wake_drain_waiters()
        if self._replies_stuck:
            self._replies_stuck = False
            self._update_reading()

    # -- event processing -----------------------------------------------------------

    def _process_events(self, *, received: bool = False) -> None:
        # Handle what the core produced and write what it queued; called
        # after every receive_data(), and by others to flush. ``received``:
        # called by data_received() right after receive_data(), so a task
        # waiting in recv() for the messages that came may run before this
        # returns (see _MessageWaiter), and the core's output is looked at
        # only when receiving can have queued some.
        core = self._core
        waiter = None
        others = False
        events = core.events_received()
        if events:
            messages = self._messages
            queued = len(messages)
            limiter = self._message_limiter
            for event in events:
                # Exact type checks, most frequent first: this is the hot path.
                # Whole messages come as plain bytes and str (plain_messages).
                if type(event) is bytes:
                    if limiter is None or not self._refused(limiter, len(event)):
                        messages.append(event)
                elif type(event) is str:
                    if limiter is None or not self._refused(
                        limiter, len(event) if event.isascii() else len(event.encode())
                    ):
                        messages.append(event)
                else:
                    others = True
                    if type(event) is Pong:
                        self._on_pong(event.payload)
                    elif type(event) is Close:
                        self._wake_receiver()
                    elif type(event) is Ping:
                        if self._ping_limiter is not None:
                            self._answer_ping(self._ping_limiter, event.payload)
                        # else the core answered it already
                    else:
                        self._on_handshake_event(event)  # type: ignore[arg-type]
            if len(messages) != queued:
                self.messages_received += len(messages) - queued
                waiter = self._recv_waiter
                if self._idle_handle is not None or len(messages) >= self._queue_limit:
                    self._on_messages_queued()
        # The core queues bytes to send while receiving only along with an
        # event that is not a message (a Ping's Pong, the Close reply) or
        # when it fails the connection (see its receive_data()).
        if others or not received or core.state is not _OPEN or core.failure_pending:
            output = core.data_to_send()
            if output:
                self._write_replies(output)
            if core.failure_pending:
                self._defer_failure()
            if core.close_transport or core.state is _CLOSED:
                self._check_close()
        if waiter is not None:
            # Last, once everything above is done: the task may run right here.
            waiter.wake(now=received)

    def _on_messages_queued(self) -> None:
        # Note the activity for the idle timeout; pause reading once the queue is full.
        if self._idle_handle is not None:
            self._last_activity = self._loop.time()
        max_queue = self._max_queue
        messages = self._messages
        if max_queue is not None and len(messages) >= max_queue and not self._queue_full:
            state = self._core.state
            if state is _OPEN:
                self._queue_full = True
                self._update_reading()
            elif state is _CLOSING:
                # We sent Close and must read on to see the peer's; what it
                # sends meanwhile beyond a full queue is dropped rather than
                # buffered without bound.
                while len(messages) > max_queue:
                    messages.pop()

    def _write_replies(self, output: list[bytes | bytearray | memoryview]) -> None:
        # What the core queued on its own (pongs, the Close reply).
        transport = self._transport
        if transport is None or self._lost:
            return
        transport.writelines(output)
        if self._writing_paused:
            # Replies (pongs) the peer does not read; see _MIN_REPLY_BACKLOG.
            self._reply_backlog += sum(len(chunk) for chunk in output)
            if self._reply_backlog > max(self._write_limit, _MIN_REPLY_BACKLOG):
                self._replies_stuck = True
                self._update_reading()

    def _refused(self, limiter: MessageLimiter, size: int) -> bool:
        # True when the message must be dropped: over the peer's rate, or
        # after that, while the close handshake runs.
        if self._over_rate:
            return True
        reason = limiter.on_message(size)
        if reason is None:
            return False
        self._over_rate = True
        self.logger.info("%r: %s; closing with 1008", self, reason)
        self._start_close(1008, reason)
        return True

    def _answer_ping(self, limiter: PingLimiter, payload: bytes) -> None:
        core = self._core
        if core.state is _OPEN and limiter.allow():
            core.send(Pong(payload))

    def _defer_failure(self) -> None:
        # The peer violated the protocol after sending valid messages: let the
        # application read them (and answer) before the Close goes out. Nothing
        # more is read meanwhile, and close_timeout bounds the wait.
        if not self._messages:
            self._commit_failure()
            return
        if self._failure_handle is None:
            self._failure_waiting = True
            self._update_reading()
            delay = self.close_timeout if self.close_timeout is not None else 10.0
            self._failure_handle = self._loop.call_later(delay, self._commit_failure)

    def _commit_failure(self) -> None:
        if self._failure_handle is not None:
            self._failure_handle.cancel()
            self._failure_handle = None
        self._failure_waiting = False
        core = self._core
        if not core.failure_pending:
            return
        core.commit_failure()
        self.logger.debug("%r: failed the connection: %s", self, core.failure)
        self._flush()
        self._check_close()

    def _on_handshake_event(self, event: Event) -> None:
        # Request / Accept / Reject: handled by the client and server subclasses.
        self.logger.debug("%r: unexpected event %r", self, event)

    def _on_pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload not in pings:
            return  # unsolicited, or for a ping that was answered already
        now = time.perf_counter()
        # Acknowledge this ping and every earlier one, oldest first.
        for key in list(pings):
            waiter, sent_at = pings.pop(key)
            if not waiter.done():
                waiter.set_result(now - sent_at)
            if key == payload:
                self.latency = now - sent_at
                break

    def _wake_receiver(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None:
            waiter.wake()

    def _wake_drain_waiters(self) -> None:
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._lost:
            return
        pause = self._queue_full or self._replies_stuck or self._failure_waiting
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _flush(self) -> None:
        data = self._core.data_to_send()
        if data and self._transport is not None and not self._lost:
            self._transport.writelines(data)

    def _internal_error(self) -> None:
        # A bug on our side, not the peer's doing (the core never raises for
        # those): log it and fail the connection without hurting others.
        self.logger.exception("%r: internal error while processing received data", self)
        try:
            self._fail(1011, "internal error")
        except Exception:
            if self._transport is not None:
                self._transport.abort()

    def _write_timed_out(self) -> None:
        # The peer read nothing for write_timeout while our buffer stayed
        # full: a Close could not reach it either, so drop the transport.
        self._write_handle = None
        if self._lost or self._transport is None:
            return
        self.logger.info("%r: peer read nothing for %s s; dropping the connection", self, self.write_timeout)
        if self._core.state is _OPEN:
            self._core.fail(1008, "peer stopped reading")
            self._core.data_to_send()  # unsendable: the buffer is full
        self._transport.abort()

    def expire_at(self, delay: float | None, reason: str = "credentials expired") -> None:
        """Close the connection with 1008 after ``delay`` seconds (an expiring credential).

        A later call replaces the earlier deadline (a refreshed token); None
        removes it (a credential that no longer expires).
        """
        if self._expire_handle is not None:
            self._expire_handle.cancel()
            self._expire_handle = None
        if delay is not None:
            self._expire_handle = self._loop.call_later(max(0.0, delay), self._expire, reason)

    def _expire(self, reason: str) -> None:
        self._expire_handle = None
        if not self._lost and self._core.state is _OPEN:
            self.logger.info("%r: %s; closing with 1008", self, reason)
            self._start_close(1008, reason)

    # -- idle timeout ---------------------------------------------------------------

    def _start_idle_timer(self) -> None:
        if self.idle_timeout is not None and self._idle_handle is None:
            self._last_activity = self._loop.time()
            self._idle_handle = self._loop.call_later(self.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        # One timer per connection: each message only stores a timestamp,
        # and the timer re-arms for whatever time is left.
        self._idle_handle = None
        if self._lost or self._core.state is not _OPEN or self.idle_timeout is None:
            return
        left = self._last_activity + self.idle_timeout - self._loop.time()
        if left > 0:
            self._idle_handle = self._loop.call_later(left, self._check_idle)
            return
        self.logger.info("%r: idle for %s s; closing", self, self.idle_timeout)
        self._start_close(1001, "idle timeout")

    # -- keepalive -----------------------------------------------------------------

    def _start_keepalive(self) -> None:
        self._start_idle_timer()
        if self.ping_interval is not None and self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_later(self.ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_handle = None
        if self._core.state is not _OPEN or self._lost:
            return
        try:
            waiter = self.ping()
        except WebSocketError:
            return
        assert self.ping_interval is not None
        self._keepalive_handle = self._loop.call_later(self.ping_interval, self._keepalive)
        timeout = None
        if self.ping_timeout is not None:
            timeout = self._loop.call_later(self.ping_timeout, self._keepalive_timed_out)

        def _done(future: asyncio.Future[float]) -> None:
            if timeout is not None:
                timeout.cancel()
            if not future.cancelled():
                future.exception()  # retrieved: a close is not an error here

        waiter.add_done_callback(_done)

    def _keepalive_timed_out(self) -> None:
        if self._core.state is _OPEN and not self._lost:
            self.logger.info("%r: no pong within %s s; failing the connection", self, self.ping_timeout)
            self._fail(1011, "keepalive ping timeout")


def _event_type(fragment: object) -> type[TextMessage] | type[BytesMessage]:
    if isinstance(fragment, str):
        return TextMessage
    if isinstance(fragment, _BYTES_LIKE):
        return BytesMessage
    raise TypeError(f"a fragment must be str or bytes-like, not {type(fragment).__name__}")


def _check_fragment(event_type: type[TextMessage] | type[BytesMessage], fragment: object) -> None:
    if event_type is TextMessage:
        if not isinstance(fragment, str):
            raise TypeError("all fragments of a message must be str, like the first")
    elif not isinstance(fragment, _BYTES_LIKE):
        raise TypeError("all fragments of a message must be bytes-like, like the first")


def _deflate_options(compression: Compression) -> DeflateOptions | None:
    if compression is None:
        return None
    if isinstance(compression, DeflateOptions):
        return compression
    if compression == "deflate":
        return DeflateOptions()
    raise ValueError(f"unsupported compression: {compression!r}; use 'deflate' or None")


def _limits(limits: Limits | None, max_size: int | None) -> Limits:
    # max_size overrides limits.max_message_size unless left at its default.
    if limits is None:
        return Limits(max_message_size=max_size)
    if max_size != DEFAULT_MAX_SIZE:
        return dataclasses.replace(limits, max_message_size=max_size)
    return limits
