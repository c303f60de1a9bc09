"""The blocking client: :func:`connect` and :class:`ClientConnection`, for code without asyncio.

::

    from wsskit.sync import connect

    with connect("wss://example.com/chat") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

Each connection is an asyncio connection (:mod:`wsskit.asyncio`) running on
the process's shared event loop thread (:func:`wsskit.sync.loop.shared_loop`);
the methods here hand work to that loop with
:func:`asyncio.run_coroutine_threadsafe` and wait for the result. So the
options, limits, keepalive, timeouts and exceptions are those of the asyncio
client, and a connection may be used from several threads at once:
messages sent concurrently each go out whole, never interleaved.

Do not call the blocking methods on the loop thread itself (in a
:class:`wsskit.browser.WebSocket` listener): they raise
:class:`~wsskit.exceptions.InvalidState` rather than wait for ever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl as _ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

from ..asyncio.client import ClientConnection as _AsyncClientConnection
from ..asyncio.client import connect as _async_connect
from ..asyncio.client import default_user_agent
from ..asyncio.connection import DEFAULT_MAX_SIZE, Compression, Data, DataLike
from ..exceptions import ConnectionClosedOK
from ..protocol.connection import State
from ..protocol.events import Accept, Request
from ..protocol.headers import HeadersLike
from ..protocol.limits import Limits
from .loop import LoopThread, shared_loop

__all__ = ["ClientConnection", "connect"]

# What send() takes as one message rather than as an iterable of fragments
# (a mapping is refused by the asyncio send, with its own error).
_ONE_MESSAGE = (str, bytes, bytearray, memoryview, Mapping)

# Ends the stream of fragments handed from the sending thread to the loop.
_END = object()


class ClientConnection:
    """A blocking WebSocket client connection; :func:`connect` returns one.

    Use it as a context manager (it closes on exit), receive with
    :meth:`recv` or ``for message in ws``, send with :meth:`send`, end with
    :meth:`close`. Every method is safe to call from any thread but the
    event loop's; :meth:`recv` from one thread at a time.
    """

    def __init__(self, connection: _AsyncClientConnection, runner: LoopThread) -> None:
        self._connection = connection
        self._runner = runner
        # One send at a time. The asyncio connection keeps whole messages
        # whole, but a fragmented message can be cut into by another send
        # that was waiting for the write buffer to drain; sending threads
        # queue here instead, which also keeps each thread's order.
        self._send_lock = threading.Lock()

    # -- properties ---------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id, handy in logs."""
        return self._connection.id

    @property
    def request(self) -> Request | None:
        """The opening handshake's request, as sent."""
        return self._connection.request

    @property
    def response(self) -> Accept | None:
        """The server's answer: its headers, subprotocol and extensions."""
        return self._connection.response

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._connection.subprotocol

    @property
    def extensions(self) -> tuple[str, ...]:
        """The negotiated extensions, as header values."""
        return self._connection.extensions

    @property
    def state(self) -> State:
        """The protocol state: OPEN, CLOSING or CLOSED."""
        return self._connection.state

    @property
    def close_code(self) -> int | None:
        """How the connection closed (as the asyncio client's); None while not closed."""
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with :attr:`close_code`; None while not closed."""
        return self._connection.close_reason

    @property
    def remote_address(self) -> Any:
        """The server's address (the proxy's, through a proxy)."""
        return self._connection.remote_address

    @property
    def local_address(self) -> Any:
        """This side's address."""
        return self._connection.local_address

    @property
    def latency(self) -> float:
        """The round-trip time of the last ping answered, in seconds."""
        return self._connection.latency

    def __repr__(self) -> str:
        return f"<sync.ClientConnection {self.id} {self.state.name} {self.remote_address!r}>"

    # -- receiving ----------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Waits at most ``timeout`` seconds (None: without limit; 0: only take
        a message already received) and raises :class:`TimeoutError` when
        none came; a message is never lost to a timeout. Raises the
        :class:`~wsskit.exceptions.ConnectionClosed` subclass that fits once
        the connection is closed and every earlier message was returned, and
        :class:`~wsskit.exceptions.InvalidState` when another thread is
        already waiting in :meth:`recv`.
        """
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must not be negative")
        return self._runner.run(self._recv(timeout))

    async def _recv(self, timeout: float | None) -> Data:
        # The timeout is applied on the loop, not by the waiting thread: a
        # result that arrives as the waiting thread gives up would be lost
        # with the concurrent future, whereas cancelling Connection.recv()
        # never drops a message (it takes one only once it has resumed).
        if timeout is None:
            return await self._connection.recv()
        receiving = asyncio.ensure_future(self._connection.recv())
        done, _ = await asyncio.wait({receiving}, timeout=timeout)
        if not done:
            receiving.cancel()
            await asyncio.wait({receiving})
            if receiving.cancelled():
                raise TimeoutError(f"no message within {timeout} s")
        return receiving.result()

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the connection closes.

        Ends quietly on a normal close (1000, 1001, 1005); raises
        :class:`~wsskit.exceptions.ConnectionClosedError` otherwise.
        """
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # -- sending ------------------------------------------------------------------

    def send(self, message: DataLike | Iterable[DataLike]) -> None:
        """Send one message and return once it is written.

        ``str`` goes as a text message, a bytes-like object as a binary one;
        an iterable of fragments (all ``str`` or all bytes-like) goes as one
        fragmented message, pulled from the iterable in the calling thread
        (it may be a slow generator). Sends from several threads go one
        at a time, each message whole, a send waiting for the one before it.

        Raises :class:`~wsskit.exceptions.ConnectionClosed` when the
        connection is closing or closed and :class:`TypeError` for anything
        else, as the asyncio client's ``send``.
        """
        self._runner.check_other_thread()
        with self._send_lock:
            if isinstance(message, _ONE_MESSAGE) or not isinstance(message, Iterable):
                # One message (or something send() refuses with its own error).
                self._runner.run(self._connection.send(message))
            else:
                self._send_fragments(iter(message))

    def _send_fragments(self, fragments: Iterator[DataLike]) -> None:
        # The calling thread iterates and hands each fragment to the loop
        # through a one-slot queue, so the loop never runs the caller's
        # iterator and the caller is never more than a fragment ahead.
        runner = self._runner
        queue: asyncio.Queue[object] = runner.run(_make_queue())

        async def stream() -> AsyncIterator[DataLike]:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Raise):
                    raise item.exception
                yield cast(DataLike, item)

        sending = runner.submit(self._connection.send(stream()))
        try:
            while True:
                try:
                    fragment: object = next(fragments)
                except StopIteration:
                    fragment = _END
                except Exception as exc:
                    # Raised on the loop side too, which fails a message cut
                    # short with 1011. (A KeyboardInterrupt is not carried
                    # over, it would stop the loop: cancelling does the same.)
                    self._hand_over(queue, _Raise(exc), sending)
                    raise
                if not self._hand_over(queue, fragment, sending) or fragment is _END:
                    break
            sending.result()
        except BaseException:
            sending.cancel()
            raise

    def _hand_over(
        self, queue: asyncio.Queue[object], item: object, sending: concurrent.futures.Future[None]
    ) -> bool:
        # Put item in the queue, unless the send ended first (closed, a type
        # error): then return False and let sending.result() raise.
        putting = asyncio.run_coroutine_threadsafe(queue.put(item), self._runner.loop)
        concurrent.futures.wait((putting, sending), return_when=concurrent.futures.FIRST_COMPLETED)
        if putting.done():
            return True
        putting.cancel()
        return False

    def ping(self, data: DataLike | None = None) -> concurrent.futures.Future[float]:
        """Send a Ping; return a future for the round-trip time in seconds.

        ``latency = ws.ping().result(timeout=5)`` waits for the matching Pong.
        The Ping is sent before this returns; errors in sending it (the
        connection closing or closed, a payload over 125 bytes) are raised
        here, as by the asyncio client's ``ping``. The future fails with
        :class:`~wsskit.exceptions.ConnectionClosed` if the connection closes
        first.
        """
        return self._runner.run(self._ping(data))

    async def _ping(self, data: DataLike | None) -> concurrent.futures.Future[float]:
        waiter = self._connection.ping(data)
        result: concurrent.futures.Future[float] = concurrent.futures.Future()
        result.set_running_or_notify_cancel()

        def copy(done: asyncio.Future[float]) -> None:
            if done.cancelled():
                result.cancel()
            elif done.exception() is not None:
                result.set_exception(done.exception())
            else:
                result.set_result(done.result())

        waiter.add_done_callback(copy)
        return result

    def pong(self, data: DataLike = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat); raises as the asyncio ``pong``."""
        self._runner.run(self._connection.pong(data))

    # -- closing ------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and wait until the connection is closed.

        Bounded by ``close_timeout``; does nothing more when already closed.
        Raises :class:`~wsskit.exceptions.LocalProtocolError` for a close
        code one may not send or a reason longer than 123 bytes in UTF-8.
        """
        self._runner.run(self._connection.close(code, reason))

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed; return False if ``timeout`` passed first."""
        future = self._runner.submit(self._connection.wait_closed())
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False
        return True

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Raise:
    """An exception raised by the caller's fragment iterator, carried to the loop."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


async def _make_queue() -> asyncio.Queue[object]:
    # Made on the loop: on Python 3.10 a queue binds to the loop current at creation.
    return asyncio.Queue(maxsize=1)


def connect(
    uri: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    origin: str | None = None,
    compression: Compression = "deflate",
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    write_timeout: float | None = 60,
    idle_timeout: float | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    max_queue: int | None = 16,
    write_limit: int = 2**15,
    limits: Limits | None = None,
    user_agent_header: str | None = default_user_agent(),
    max_redirects: int = 10,
    proxy: str | bool | None = True,
    proxy_ssl: _ssl.SSLContext | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` and return it once open.

    The options are those of :func:`wsskit.asyncio.client.connect` (TLS,
    subprotocols, headers, compression, timeouts, limits, redirects,
    proxies), but ``reconnect``: loop over :func:`connect` yourself, or use
    :class:`wsskit.browser.WebSocket` with ``reconnect=True``. Keepalive
    pings go on in the background while the calling thread does other
    things. Use ``with connect(uri) as ws:`` to close the connection on exit.

    Raises what the asyncio ``connect`` raises:
    :class:`~wsskit.exceptions.InvalidURI`, :class:`OSError` when the
    connection fails (:class:`ssl.SSLCertVerificationError` for a
    certificate that does not verify), :class:`TimeoutError` after
    ``open_timeout``, :class:`~wsskit.exceptions.InvalidStatus` when the
    server answers with a status other than 101,
    :class:`~wsskit.exceptions.InvalidHandshake` for an invalid answer; and
    :class:`~wsskit.exceptions.InvalidState` on the event loop thread.
    """
    runner = shared_loop()
    connecting = _async_connect(
        uri,
        ssl=ssl,
        subprotocols=subprotocols,
        additional_headers=additional_headers,
        origin=origin,
        compression=compression,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        write_timeout=write_timeout,
        idle_timeout=idle_timeout,
        max_size=max_size,
        max_queue=max_queue,
        write_limit=write_limit,
        limits=limits,
        user_agent_header=user_agent_header,
        max_redirects=max_redirects,
        proxy=proxy,
        proxy_ssl=proxy_ssl,
    )

    async def open_connection() -> _AsyncClientConnection:
        return await connecting

    return ClientConnection(runner.run(open_connection()), runner)
