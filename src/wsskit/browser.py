"""A WebSocket class shaped like the browser's (WHATWG WebSockets Standard).

Code written for a browser translates line for line::

    // JavaScript                                    # Python
    const ws = new WebSocket(url);                   ws = WebSocket(url)
    ws.onopen = () => ws.send("hi");                 ws.onopen = lambda event: ws.send("hi")
    ws.addEventListener("message", (e) =>            ws.add_event_listener("message", lambda e:
        console.log(e.data));                            print(e.data))
    ws.close(1000, "bye");                           ws.close(1000, "bye")

:class:`WebSocket` starts connecting as it is constructed, dispatches
``open``, ``message``, ``error`` and ``close`` events (plus ``reconnecting``
with ``reconnect=``), and never raises from the network: failures arrive as
an ``error`` event followed by a ``close`` event, as in a browser.

Where it runs:

- constructed while an asyncio event loop runs (in a coroutine), everything
  happens on that loop, listeners included; ``await ws.opened()`` and
  ``await ws.closed()`` wait for those states;
- constructed in a plain script (no running loop), the socket runs on the
  process's shared event loop thread (:func:`wsskit.sync.loop.shared_loop`)
  and **listeners are called on that thread**, one at a time, as a browser
  calls them on its one event loop; :meth:`WebSocket.run_forever` and
  :meth:`WebSocket.wait_closed` block the calling thread until the socket
  is closed.

Under the hood each connection is a :mod:`wsskit.asyncio` client connection,
so TLS, keepalive, timeouts, limits and proxies are those of
:func:`wsskit.asyncio.client.connect`, whose options the constructor takes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import logging
import random
import ssl as _ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, Union, cast, overload

from .asyncio.client import ClientConnection as _AsyncClientConnection
from .asyncio.client import _policy_view
from .asyncio.client import connect as _async_connect
from .asyncio.connection import Data
from .exceptions import ConnectionClosed, GiveUp, InvalidState, closed_exception
from .protocol.headers import HeadersLike
from .reconnect import ReconnectPolicy
from .sync.loop import LoopThread, shared_loop
from .uri import parse_uri

__all__ = [
    "WebSocket",
    "Event",
    "MessageEvent",
    "CloseEvent",
    "ErrorEvent",
    "ReconnectingEvent",
    "BinaryType",
    "Listener",
    "CONNECTING",
    "OPEN",
    "CLOSING",
    "CLOSED",
]

logger = logging.getLogger("wsskit.browser")

T = TypeVar("T")

#: ``ready_state`` values, as the browser's ``WebSocket.CONNECTING`` ...
CONNECTING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

_STATE_NAMES = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")

#: What binary messages are delivered as: ``"bytes"`` (the default),
#: ``"bytearray"`` or ``"memoryview"``; the browser's names are accepted too:
#: ``"blob"`` (immutable data, here ``bytes``) and ``"arraybuffer"`` (a
#: mutable buffer, here ``bytearray``).
BinaryType = Literal["bytes", "bytearray", "memoryview", "blob", "arraybuffer"]

_BINARY_TYPES: dict[str, Callable[[bytes], bytes | bytearray | memoryview]] = {
    "bytes": bytes,
    "blob": bytes,
    "bytearray": bytearray,
    "arraybuffer": bytearray,
    "memoryview": memoryview,
}

#: An event listener: called with the event; if it returns an awaitable (a
#: coroutine function's result), that is run as a task on the socket's loop.
Listener = Callable[[Any], Union[Awaitable[Any], Any]]

#: The default bound on :attr:`WebSocket.buffered_amount`: past it the
#: socket is "full" and fails, as the standard prescribes for a full buffer.
DEFAULT_MAX_BUFFERED_AMOUNT = 64 * 2**20

# Options of wsskit.asyncio.connect the constructor sets itself.
_RESERVED_OPTIONS = frozenset({"subprotocols", "additional_headers", "reconnect", "on_reconnecting"})

# RFC 7230 §3.2.6 token characters: what a subprotocol name may hold.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Strong references to sockets that are not closed yet. A browser keeps a
# WebSocket alive while it can still fire events, whether or not the page
# holds it; without this, a socket created as `WebSocket(url).onmessage = f`
# could be garbage-collected (asyncio keeps only weak references to tasks).
_active: set[WebSocket] = set()


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Event:
    """An event: its ``type`` (``"open"``...) and the socket it comes from (``target``)."""

    type: str
    target: WebSocket | None = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class MessageEvent(Event):
    """A ``message`` event: ``data`` is ``str`` for text, else as ``binary_type`` says.

    ``origin`` is the origin of the socket's URL (``wss://host:port``).
    """

    data: str | bytes | bytearray | memoryview = ""
    origin: str = ""


@dataclass(frozen=True, eq=False)
class CloseEvent(Event):
    """A ``close`` event: how the connection closed.

    ``code`` and ``reason`` come from the Close frame the server sent
    (1005 for one without a code) or are 1006 and ``""`` when none came (a
    refused handshake, a dropped connection). ``was_clean`` is True when
    the closing handshake completed: both sides sent a Close frame and the
    connection did not fail.
    """

    code: int = 1006
    reason: str = ""
    was_clean: bool = False

    @property
    def wasClean(self) -> bool:
        """The browser's name for :attr:`was_clean`."""
        return self.was_clean


@dataclass(frozen=True, eq=False)
class ErrorEvent(Event):
    """An ``error`` event, dispatched just before ``close`` when the connection failed.

    ``exception`` (an addition to the standard, which gives no detail) is
    what failed: the handshake's :class:`~wsskit.exceptions.InvalidStatus`,
    an :class:`OSError` or :class:`ssl.SSLError`, a
    :class:`~wsskit.exceptions.ConnectionClosedError` for a dropped
    connection, :class:`~wsskit.reconnect.GiveUp`... It is None when
    :meth:`WebSocket.close` was called before the connection opened.
    """

    exception: BaseException | None = None


@dataclass(frozen=True, eq=False)
class ReconnectingEvent(Event):
    """A ``reconnecting`` event (an addition to the standard): a new attempt comes.

    Dispatched with ``reconnect=`` after a connection or an attempt failed
    in a way worth retrying, before waiting ``delay`` seconds for attempt
    number ``attempt`` (1, 2... counted since the last stable connection).
    ``exception`` is what failed (a
    :class:`~wsskit.exceptions.ConnectionClosed` for a lost connection).
    """

    attempt: int = 0
    delay: float = 0.0
    exception: BaseException | None = None


# -- listeners ------------------------------------------------------------------------


class _Entry:
    """One registered listener, or the slot of an ``on<type>`` attribute."""

    __slots__ = ("callback", "handler", "once", "removed")

    def __init__(self, callback: Listener | None, *, once: bool = False, handler: bool = False) -> None:
        self.callback = callback
        self.once = once
        self.handler = handler
        self.removed = False


class _EventHandler:
    """The ``on<type>`` attributes (``onopen``...): one listener each, settable to None.

    As in the HTML standard, setting one the first time registers it among
    the listeners of its type at that position; changing it later keeps the
    position, and None removes it.
    """

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._type = name[2:]

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _EventHandler: ...

    @overload
    def __get__(self, instance: WebSocket, owner: type[Any]) -> Listener | None: ...

    def __get__(self, instance: WebSocket | None, owner: type[Any]) -> _EventHandler | Listener | None:
        if instance is None:
            return self
        return instance._handlers.get(self._type)

    def __set__(self, instance: WebSocket, value: Listener | None) -> None:
        instance._set_handler(self._type, value)


@dataclass
class _End:
    """How a socket ends: what its close event (and error event, if it failed) will say."""

    code: int
    reason: str
    was_clean: bool
    failed: bool
    exception: BaseException | None = None


# -- the socket -------------------------------------------------------------------------


class WebSocket:
    """A WebSocket connection with the browser's interface; it connects at once.

    ``url`` is a ``ws://`` or ``wss://`` URL (``http://`` and ``https://``
    map to them, as in browsers); ``protocols`` one subprotocol name or a
    sequence of them. Python additions:

    - ``ssl``: the TLS context (default: the system's CAs, verifying);
      ``wsskit.tls.client_context(cafile, certfile, keyfile)`` for a
      private CA or a client certificate;
    - ``headers``: extra headers for the opening handshake (a token...);
    - ``reconnect``: True or a :class:`~wsskit.reconnect.ReconnectPolicy`:
      after a failure worth retrying the socket goes back to ``CONNECTING``,
      dispatches a ``reconnecting`` event, waits the policy's delay, and
      dispatches ``open`` again once connected. Never after a 401 or 403, a
      1008, a certificate that does not verify, or :meth:`close`; running
      out of attempts gives ``error`` (a
      :class:`~wsskit.reconnect.GiveUp`) then ``close``;
    - ``binary_type``: the initial :attr:`binary_type`;
    - ``max_buffered_amount``: bytes :meth:`send` may queue before the
      socket counts as full and fails (None: no bound);
    - ``onopen``, ``onmessage``, ``onerror``, ``onclose``,
      ``onreconnecting``: the ``on<type>`` attributes, set before the
      connection starts. In a script (where the socket runs on another
      thread) this makes sure no event comes before its listener; setting
      the attributes right after construction, as browser code does, only
      relies on the handshake's network round trips taking longer;
    - ``**options``: the other options of
      :func:`wsskit.asyncio.client.connect` (``open_timeout``,
      ``ping_interval``, ``max_size``, ``origin``, ``compression``...).

    Raises :class:`~wsskit.exceptions.InvalidURI` (a :class:`ValueError`,
    the browser's SyntaxError) for a bad URL, :class:`ValueError` for
    duplicate or invalid subprotocols and :class:`TypeError` or
    :class:`ValueError` for a bad option. Nothing else is raised: network
    failures come as events.
    """

    CONNECTING: Final = CONNECTING
    OPEN: Final = OPEN
    CLOSING: Final = CLOSING
    CLOSED: Final = CLOSED

    onopen = _EventHandler()
    onmessage = _EventHandler()
    onerror = _EventHandler()
    onclose = _EventHandler()
    onreconnecting = _EventHandler()

    def __init__(
        self,
        url: str,
        protocols: str | Sequence[str] | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
        headers: HeadersLike | None = None,
        reconnect: bool | ReconnectPolicy = False,
        binary_type: BinaryType = "bytes",
        max_buffered_amount: int | None = DEFAULT_MAX_BUFFERED_AMOUNT,
        onopen: Listener | None = None,
        onmessage: Listener | None = None,
        onerror: Listener | None = None,
        onclose: Listener | None = None,
        onreconnecting: Listener | None = None,
        **options: Any,
    ) -> None:
        self._url = _websocket_url(url)
        wsuri = parse_uri(self._url)
        if ssl is not None and not wsuri.secure:
            raise ValueError("ssl= is for wss:// URLs; this one is ws://")
        self._origin = f"{'wss' if wsuri.secure else 'ws'}://{wsuri.host_header}"
        subprotocols = _check_protocols(protocols)
        if isinstance(reconnect, ReconnectPolicy):
            self._policy: ReconnectPolicy | None = reconnect
        elif isinstance(reconnect, bool):
            self._policy = ReconnectPolicy() if reconnect else None
        else:
            raise TypeError(f"reconnect must be a bool or a ReconnectPolicy, not {reconnect!r}")
        reserved = _RESERVED_OPTIONS & options.keys()
        if reserved:
            raise TypeError(f"WebSocket() sets {', '.join(sorted(reserved))} itself; see its arguments")
        if max_buffered_amount is not None and (
            isinstance(max_buffered_amount, bool)
            or not isinstance(max_buffered_amount, int)
            or max_buffered_amount < 0
        ):
            raise ValueError(f"max_buffered_amount must be an int >= 0 or None, not {max_buffered_amount!r}")
        self._options: dict[str, Any] = {
            **options,
            "ssl": ssl,
            "subprotocols": subprotocols or None,
            "additional_headers": headers,
        }
        # Check the options now (unknown names, bad values) rather than
        # fail every attempt later: connect() validates without any I/O.
        _async_connect(self._url, **self._options)
        self._binary_type: BinaryType = "bytes"
        self.binary_type = binary_type
        self._max_buffered = max_buffered_amount
        # How long a script's send() waits for the open (see send()).
        self._open_timeout: float | None = options.get("open_timeout", 10)

        # State shared with the loop thread; _lock guards the transitions
        # that send() and close() make from other threads.
        self._lock = threading.Lock()
        self._ready_state: int = CONNECTING
        self._buffered = 0
        self._full = False
        self._stop = False  # close() was called: no more reconnecting
        self._close_args: tuple[int, str] | None = None
        # Messages waiting for the writer, then None for a requested close.
        self._outbox: collections.deque[tuple[Data, int] | None] = collections.deque()
        self._protocol = ""
        self._extensions = ""
        self._open_waiters: list[concurrent.futures.Future[None]] = []
        self._closed: concurrent.futures.Future[CloseEvent] = concurrent.futures.Future()
        self._end_exception: BaseException | None = None  # the error event's, once closed

        self._listeners_lock = threading.Lock()
        self._listeners: dict[str, list[_Entry]] = {}
        self._handlers: dict[str, Listener] = {}
        self._listener_tasks: set[asyncio.Future[Any]] = set()

        # Loop-side state: only touched on the loop's thread.
        self._connection: _AsyncClientConnection | None = None
        self._wakeup: asyncio.Event | None = None
        self._pending: asyncio.Task[Any] | None = None
        # Hooks for tests (and callers with a clock of their own): how the
        # reconnecting loop waits, and where its jitter comes from.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._random: Callable[[], float] = random.random

        self._runner: LoopThread | None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._runner = shared_loop()
            self._loop = self._runner.loop
            self._loop_thread: int | None = self._runner.thread.ident
        else:
            self._runner = None
            self._loop_thread = threading.get_ident()
        for type, listener in (
            ("open", onopen),
            ("message", onmessage),
            ("error", onerror),
            ("close", onclose),
            ("reconnecting", onreconnecting),
        ):
            if listener is not None:
                self._set_handler(type, listener)
        _active.add(self)
        # The socket's life on the loop (kept: the loop holds tasks only weakly).
        self._running: asyncio.Task[None] | concurrent.futures.Future[None]
        if self._runner is None:
            self._running = self._loop.create_task(self._run())
        else:
            self._running = self._runner.submit(self._run())

    # -- attributes -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL given to the constructor (``http(s)://`` turned into ``ws(s)://``)."""
        return self._url

    @property
    def ready_state(self) -> int:
        """:data:`CONNECTING` (0), :data:`OPEN` (1), :data:`CLOSING` (2) or :data:`CLOSED` (3)."""
        return self._ready_state

    @property
    def protocol(self) -> str:
        """The subprotocol the server selected, or ``""``."""
        return self._protocol

    @property
    def extensions(self) -> str:
        """The extensions the server accepted, as its ``Sec-WebSocket-Extensions`` header says."""
        return self._extensions

    @property
    def buffered_amount(self) -> int:
        """Bytes of messages queued by :meth:`send` and not yet handed to the connection.

        Text counts its UTF-8 length, binary data its length; frame headers
        and compression do not count. Once a message is written to the
        connection's transport it no longer counts (at most ``write_limit``
        bytes then wait in the transport's buffer). As the standard says,
        messages sent while ``CLOSING`` or ``CLOSED`` are discarded yet
        counted, so the value never drops back after the connection closed.
        When reconnecting, what the lost connection did not send is dropped
        and the count starts again from 0.
        """
        return self._buffered

    @property
    def binary_type(self) -> BinaryType:
        """How binary messages are delivered: ``"bytes"`` (default), ``"bytearray"`` or ``"memoryview"``.

        The browser's values are accepted too: ``"blob"`` gives ``bytes``
        (immutable, like a Blob) and ``"arraybuffer"`` gives ``bytearray``
        (a mutable buffer, like an ArrayBuffer). Raises :class:`ValueError`
        for anything else (a browser would ignore it silently).
        """
        return self._binary_type

    @binary_type.setter
    def binary_type(self, value: BinaryType) -> None:
        if value not in _BINARY_TYPES:
            raise ValueError(
                f"binary_type must be one of {', '.join(map(repr, _BINARY_TYPES))}, not {value!r}"
            )
        self._binary_type = value

    # The browser's camelCase names, so that code translates line for line.

    @property
    def readyState(self) -> int:
        """The browser's name for :attr:`ready_state`."""
        return self._ready_state

    @property
    def bufferedAmount(self) -> int:
        """The browser's name for :attr:`buffered_amount`."""
        return self._buffered

    @property
    def binaryType(self) -> BinaryType:
        """The browser's name for :attr:`binary_type`."""
        return self._binary_type

    @binaryType.setter
    def binaryType(self, value: BinaryType) -> None:
        self.binary_type = value

    def __repr__(self) -> str:
        return f"<WebSocket {self._url} {_STATE_NAMES[self._ready_state]}>"

    # -- listeners ------------------------------------------------------------------

    def add_event_listener(self, type: str, listener: Listener | None, *, once: bool = False) -> None:
        """Call ``listener(event)`` for each event of ``type``; with ``once``, for the next one only.

        Listeners run in the order they were added, on the socket's loop
        thread. A listener already added for ``type`` is not added twice.
        A coroutine function's coroutine runs as a task (not awaited before
        the next listener). An exception in a listener is logged (logger
        ``wsskit.browser``) and the other listeners still run. None is
        ignored, as in browsers.
        """
        if listener is None:
            return
        if not callable(listener):
            raise TypeError(f"a listener must be callable, not {listener!r}")
        with self._listeners_lock:
            entries = self._listeners.setdefault(type, [])
            for entry in entries:
                if not entry.handler and entry.callback == listener:
                    return
            entries.append(_Entry(listener, once=once))

    def remove_event_listener(self, type: str, listener: Listener | None) -> None:
        """Remove ``listener`` from the listeners of ``type``; it is not called any more.

        Removing one that was not added does nothing. A listener removed
        while an event is being dispatched is not called for that event.
        """
        with self._listeners_lock:
            entries = self._listeners.get(type, [])
            for entry in entries:
                if not entry.handler and entry.callback == listener:
                    entry.removed = True
                    entries.remove(entry)
                    return

    def addEventListener(self, type: str, listener: Listener | None, *, once: bool = False) -> None:
        """The browser's name for :meth:`add_event_listener`."""
        self.add_event_listener(type, listener, once=once)

    def removeEventListener(self, type: str, listener: Listener | None) -> None:
        """The browser's name for :meth:`remove_event_listener`."""
        self.remove_event_listener(type, listener)

    def _set_handler(self, type: str, value: Listener | None) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"on{type} must be callable or None, not {value!r}")
        with self._listeners_lock:
            entries = self._listeners.setdefault(type, [])
            if value is None:
                self._handlers.pop(type, None)
                for entry in entries:
                    if entry.handler:
                        entry.removed = True
                        entries.remove(entry)
                        break
                return
            if type not in self._handlers:
                entries.append(_Entry(None, handler=True))
            self._handlers[type] = value

    def _dispatch(self, event: Event) -> None:
        # On the loop thread. Listeners added during dispatch wait for the
        # next event; removed ones are skipped (DOM "inner invoke").
        with self._listeners_lock:
            entries = list(self._listeners.get(event.type, ()))
        for entry in entries:
            if entry.removed:
                continue
            if entry.once:
                with self._listeners_lock:
                    entry.removed = True
                    with contextlib.suppress(ValueError):
                        self._listeners[event.type].remove(entry)
            callback = self._handlers.get(event.type) if entry.handler else entry.callback
            if callback is not None:
                self._invoke(callback, event)

    def _invoke(self, callback: Listener, event: Event) -> None:
        try:
            result = callback(event)
        except Exception:
            logger.exception("%r: %s listener %r raised", self, event.type, callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._listener_tasks.add(task)
            task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%r: a coroutine listener raised", self, exc_info=task.exception())

    # -- sending and closing --------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Queue ``data`` to be sent: ``str`` as a text message, bytes-like as binary.

        Returns at once; :attr:`buffered_amount` grows by the message's size
        and drops back once it is written. Bytes-like data is copied, so it
        may change afterwards. While ``CLOSING`` or ``CLOSED`` the message is
        discarded (yet counted in :attr:`buffered_amount`), as the standard
        says. Past ``max_buffered_amount`` the socket is full: it fails
        (``error`` with a :class:`BufferError`, then ``close``).

        Raises :class:`~wsskit.exceptions.InvalidState` (the browser's
        InvalidStateError) while ``CONNECTING``, and :class:`TypeError` for
        other types. In a plain script (no asyncio loop of the caller's) it
        first waits for the opening handshake, up to ``open_timeout``, so a
        ``send()`` right after the constructor works as the snippet expects.
        """
        payload: Data
        if isinstance(data, str):
            payload = data
            size = len(data) if data.isascii() else len(data.encode("utf-8"))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
            size = len(payload)
        else:
            raise TypeError(f"send() takes str or a bytes-like object, not {type(data).__name__}")
        if self._ready_state == CONNECTING and self._may_wait_for_open():
            # A script has no event-loop turn to end before the open event,
            # so the snippet's send() right after the constructor would always
            # fail; there it waits for the opening handshake instead (bounded
            # by open_timeout) and fails only if the socket does not open.
            with contextlib.suppress(Exception):
                self._open_waiter().result(self._open_timeout)
        with self._lock:
            state = self._ready_state
            if state == CONNECTING:
                raise InvalidState("the WebSocket is still CONNECTING: send() after the open event")
            self._buffered += size
            if state != OPEN or self._full:
                return
            if self._max_buffered is not None and self._buffered > self._max_buffered:
                self._full = True
            else:
                self._outbox.append((payload, size))
        self._poke()

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Start closing the connection; the ``close`` event tells when it is closed.

        ``code`` must be 1000 or from 3000 to 4999, else :class:`ValueError`
        (the browser's InvalidAccessError); ``reason`` at most 123 bytes in
        UTF-8, else :class:`ValueError` (the browser's SyntaxError). Without
        ``code`` the Close frame carries no code (the server sees 1005), or
        1000 if there is a ``reason``. Messages already queued by
        :meth:`send` go out first.

        While ``CONNECTING`` (including a reconnect's wait) the attempt is
        abandoned: ``error`` then ``close`` with 1006, as in browsers.
        Does nothing while ``CLOSING`` or ``CLOSED``, but for stopping any
        reconnection.
        """
        if code is not None and (
            isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 3000 <= code <= 4999)
        ):
            raise ValueError(f"close code must be 1000 or from 3000 to 4999, not {code!r}")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("close reason is longer than 123 bytes in UTF-8")
        if code is None:
            code = 1000 if reason else 1005  # 1005: a Close frame without a code
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        with self._lock:
            self._stop = True
            state = self._ready_state
            if state in (CLOSING, CLOSED):
                return
            self._ready_state = CLOSING
            if state == OPEN:
                self._close_args = (code, reason)
                self._outbox.append(None)
        self._poke()

    def _poke(self) -> None:
        # Have the loop look at the outbox and at close requests.
        if threading.get_ident() == self._loop_thread:
            self._wake()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to wake
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        # On the loop thread.
        if self._wakeup is not None:
            self._wakeup.set()
        if self._stop and self._pending is not None:
            self._pending.cancel()  # a connection attempt or a reconnect wait
        if self._full and self._connection is not None and self._connection._transport is not None:
            self._connection._transport.abort()

    # -- waiting ----------------------------------------------------------------------

    async def opened(self) -> None:
        """Wait until the socket is ``OPEN`` (at once if it is).

        Raises what failed (the error event's exception, or the
        :class:`~wsskit.exceptions.ConnectionClosed` that fits) if the
        socket closes first, as it does when the handshake is refused.
        """
        await asyncio.wrap_future(self._open_waiter())

    async def closed(self) -> CloseEvent:
        """Wait until the socket is ``CLOSED``; return its close event.

        Returns once the close event was dispatched and the coroutine
        listeners started so far have finished.
        """
        return await asyncio.wrap_future(self._closed)

    def wait_open(self, timeout: float | None = None) -> bool:
        """Block until the socket is ``OPEN``; return False if ``timeout`` seconds passed first.

        Raises as :meth:`opened` if the socket closes first, and
        :class:`~wsskit.exceptions.InvalidState` on the socket's loop thread
        (in a listener, or in a coroutine of its asyncio program), where
        waiting would block the loop for ever.
        """
        self._check_may_block()
        try:
            self._open_waiter().result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def wait_closed(self, timeout: float | None = None) -> CloseEvent | None:
        """Block until the socket is ``CLOSED``; return its close event, None if ``timeout`` passed.

        Raises :class:`~wsskit.exceptions.InvalidState` on the socket's
        loop thread, like :meth:`wait_open`.
        """
        self._check_may_block()
        try:
            return self._closed.result(timeout)
        except concurrent.futures.TimeoutError:
            return None

    def run_forever(self) -> CloseEvent:
        """Block until the socket is ``CLOSED`` (listeners meanwhile run on the loop thread).

        For scripts: ``ws = WebSocket(url); ws.onmessage = ...;
        ws.run_forever()``. On Ctrl-C the socket closes with 1001 ("going
        away", what a browser sends when leaving a page), waits for that up
        to ``close_timeout``, and re-raises ``KeyboardInterrupt``. Returns
        the close event; raises :class:`~wsskit.exceptions.InvalidState` on
        the socket's loop thread.
        """
        self._check_may_block()
        try:
            return self._closed.result()
        except KeyboardInterrupt:
            self._start_close(1001, "")
            timeout = self._options.get("close_timeout", 10)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._closed.result(timeout)
            raise

    def _may_wait_for_open(self) -> bool:
        # Script mode (the socket runs on wsskit's loop thread) and not on it.
        return self._runner is not None and threading.get_ident() != self._loop_thread

    def _check_may_block(self) -> None:
        # Once closed nothing waits, so any thread may ask (even after the
        # asyncio program that ran the socket has ended).
        if threading.get_ident() == self._loop_thread and not self._closed.done():
            raise InvalidState(
                "blocking on the WebSocket's own event loop thread would wait for ever; "
                "in asyncio code use 'await ws.opened()' / 'await ws.closed()'"
            )

    def _open_waiter(self) -> concurrent.futures.Future[None]:
        waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            state = self._ready_state
            if state != OPEN and not self._closed.done():
                self._open_waiters.append(waiter)
                return waiter
        if state == OPEN:
            waiter.set_result(None)
        else:
            waiter.set_exception(_failure_of(self._closed.result(), self._end_exception))
        return waiter

    # -- the connection's life, on the loop -------------------------------------------------

    async def _run(self) -> None:
        try:
            try:
                end = await self._lifecycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours: fail the socket rather than hang it
                logger.exception("%r: internal error", self)
                end = _End(1006, "", False, True, exc)
            await self._finish(end)
        except asyncio.CancelledError:
            # The loop is going away (asyncio.run() ended, or the program exits).
            self._abandon()
            raise

    async def _lifecycle(self) -> _End:
        loop = self._loop
        policy = self._policy
        failures = 0  # failed attempts in a row, short-lived connections included
        attempt = 0  # reconnect attempts since the last stable connection
        streak_start: float | None = None
        failure: BaseException
        end: _End
        while True:
            started = loop.time()
            attempting = await self._cancellable(self._open())
            if attempting is None:  # close() during the attempt
                return _End(1006, "", False, True, None)
            if attempting.exception() is None:
                outcome = attempting.result()
                with self._lock:
                    stopped = self._stop
                    if not stopped:
                        # Set together, so another thread never sees OPEN without them.
                        self._protocol = outcome.subprotocol or ""
                        self._extensions = ", ".join(outcome.extensions)
                        self._ready_state = OPEN
                        self._connection = outcome
                if stopped:  # close() came as the handshake completed: fail it, as in browsers
                    await _abort(outcome)
                    return _End(1006, "", False, True, None)
                end = await self._serve(outcome)
                if self._stop or self._full or policy is None or outcome._closed_locally:
                    return end  # this side ended it: close() or a full buffer
                lost_at = outcome._lost_at if outcome._lost_at is not None else loop.time()
                # Judged as connect(reconnect=) judges it: by the code the
                # asyncio connection reports (ours when this side failed it).
                ended = outcome._core.closed_error()
                if not policy.should_retry(ended):
                    return end
                failure = end.exception or ended
                opened_at = outcome._opened_at if outcome._opened_at is not None else lost_at
                if lost_at - opened_at >= policy.stable_after:
                    failures, attempt, streak_start = 0, 0, lost_at
                else:  # accepted, then dropped at once: as good as refused
                    failures += 1
                    if streak_start is None:
                        streak_start = lost_at
            else:
                failure = cast(Exception, attempting.exception())
                end = _End(1006, "", False, True, failure)
                if policy is None or not policy.should_retry(_policy_view(failure)):
                    return end
                failures += 1
                if streak_start is None:
                    streak_start = started
            elapsed = loop.time() - streak_start
            if policy.exhausted(failures, elapsed):
                give_up = GiveUp(
                    f"gave up reconnecting to {self._origin} after {failures} failed "
                    f"attempt{'s' if failures != 1 else ''} in {elapsed:.1f} s: {failure}",
                    failures,
                )
                give_up.__cause__ = failure
                return _End(1006, "", False, True, give_up)
            attempt += 1
            # RFC 6455 §7.2.3: a random first delay, then longer and longer ones.
            delay = policy.delay(attempt, _policy_view(failure), random=self._random)
            with self._lock:
                if self._stop:  # close() while the lost connection was CLOSING: it ends as it was
                    return end
                self._ready_state = CONNECTING
                self._connection = None
                self._outbox.clear()
                self._buffered = 0
                self._full = False
                self._close_args = None
                self._protocol = self._extensions = ""
            logger.info("%r: reconnecting in %.2f s (attempt %d) after: %s", self, delay, attempt, failure)
            self._dispatch(ReconnectingEvent("reconnecting", self, attempt, delay, failure))
            if await self._cancellable(self._wait(delay)) is None:
                return _End(1006, "", False, True, None)

    async def _open(self) -> _AsyncClientConnection:
        connection: _AsyncClientConnection = await _async_connect(self._url, **self._options)
        return connection

    async def _wait(self, delay: float) -> None:
        await self._sleep(delay)

    async def _cancellable(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        # Run `coroutine` as a task that close() cancels (see _wake); return
        # the task once done, None if close() stopped it. Exceptions other
        # than Exception (KeyboardInterrupt...) go on up.
        if self._stop:
            coroutine.close()
            return None
        task = self._loop.create_task(coroutine)
        self._pending = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._pending = None
        if task.cancelled():
            return None
        exception = task.exception()
        if exception is not None and not isinstance(exception, Exception):
            raise exception
        return task

    async def _serve(self, connection: _AsyncClientConnection) -> _End:
        # From open to the end of this connection: dispatch open and
        # messages, let the writer send; return how it ended.
        self._wakeup = asyncio.Event()
        with self._lock:
            waiters, self._open_waiters = self._open_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        writer = self._loop.create_task(self._write(connection))
        try:
            self._dispatch(Event("open", self))
            convert = _BINARY_TYPES
            while True:
                try:
                    message = await connection.recv()
                except ConnectionClosed:
                    break
                # WHATWG: a message received once close() was called is dropped.
                if self._ready_state != OPEN:
                    continue
                data = message if isinstance(message, str) else convert[self._binary_type](message)
                self._dispatch(MessageEvent("message", self, data, self._origin))
            with self._lock:
                if self._ready_state == OPEN:
                    self._ready_state = CLOSING
            await connection.wait_closed()
        finally:
            writer.cancel()
            await asyncio.wait({writer})
            self._wakeup = None
            if connection._transport is not None and not connection._lost:
                connection._transport.abort()
        return self._ending(connection)

    async def _write(self, connection: _AsyncClientConnection) -> None:
        # Send what send() queued, in order, then the Close close() asked for.
        outbox = self._outbox
        wakeup = self._wakeup
        assert wakeup is not None
        try:
            while True:
                while outbox:
                    item = outbox.popleft()
                    if item is None:
                        assert self._close_args is not None
                        await connection.close(*self._close_args)
                        return
                    data, size = item
                    await connection.send(data)
                    with self._lock:
                        self._buffered -= size
                wakeup.clear()
                if not outbox:
                    await wakeup.wait()
        except ConnectionClosed:
            pass  # what is left stays counted, as the standard says
        except Exception:
            logger.exception("%r: internal error while sending", self)
            if connection._transport is not None:
                connection._transport.abort()

    def _ending(self, connection: _AsyncClientConnection) -> _End:
        # WHATWG "the WebSocket connection is closed": the code and reason of
        # the Close frame received (RFC 6455 §7.1.5, §7.1.6), 1006 without
        # one; clean when the closing handshake completed (§7.1.4).
        core = connection._core
        received = core.close_received
        code, reason = (received.code, received.reason) if received is not None else (1006, "")
        failed = (
            received is None
            or core.close_sent is None
            or core.failure is not None
            or getattr(core, "_failed_locally", False)
            or self._full
        )
        exception: BaseException | None = None
        if self._full:
            exception = BufferError(
                f"send buffer full: more than {self._max_buffered} bytes queued (max_buffered_amount)"
            )
        elif failed:
            exception = core.failure or closed_exception(code, reason)
        return _End(code, reason, not failed, failed, exception)

    async def _finish(self, end: _End) -> None:
        with self._lock:
            self._ready_state = CLOSED
            waiters, self._open_waiters = self._open_waiters, []
        self._end_exception = end.exception
        if end.failed:
            self._dispatch(ErrorEvent("error", self, end.exception))
        event = CloseEvent("close", self, end.code, end.reason, end.was_clean)
        self._dispatch(event)
        failure = _failure_of(event, end.exception)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(failure)
        # Coroutine listeners (an async onclose) finish before closed()
        # returns: a script that ends there must not cut them short.
        while self._listener_tasks:
            await asyncio.wait(set(self._listener_tasks))
        self._closed.set_result(event)
        _active.discard(self)

    def _abandon(self) -> None:
        # The loop is shutting down under the socket: drop the connection and
        # release whoever waits, without dispatching (no loop to run on).
        connection = self._connection
        if connection is not None and connection._transport is not None and not connection._lost:
            connection._transport.abort()
        with self._lock:
            self._ready_state = CLOSED
            waiters, self._open_waiters = self._open_waiters, []
        event = CloseEvent("close", self, 1006, "", False)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(_failure_of(event, None))
        if not self._closed.done():
            self._closed.set_result(event)
        _active.discard(self)


# -- helpers ------------------------------------------------------------------------------


def _websocket_url(url: str) -> str:
    # WHATWG "get a URL record": http and https become ws and wss.
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme, colon, rest = url.partition(":")
    lowered = scheme.lower()
    if colon and lowered in ("http", "https"):
        return ("ws" if lowered == "http" else "wss") + ":" + rest
    return url


def _check_protocols(protocols: str | Sequence[str] | None) -> list[str]:
    # WHATWG: each must be a token (RFC 7230) and none may repeat (ignoring case).
    if protocols is None:
        return []
    names = [protocols] if isinstance(protocols, str) else list(protocols)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ValueError(f"invalid subprotocol name: {name!r}")
        if name.lower() in seen:
            raise ValueError(f"subprotocol {name!r} is given twice")
        seen.add(name.lower())
    return names


def _failure_of(event: CloseEvent, exception: BaseException | None) -> BaseException:
    # What opened() raises when the socket closed before opening.
    if exception is not None:
        return exception
    return closed_exception(event.code, event.reason)


async def _abort(connection: _AsyncClientConnection) -> None:
    if connection._transport is not None:
        connection._transport.abort()
    await connection.wait_closed()
