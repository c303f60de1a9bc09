"""The asyncio server: :func:`serve`, :class:`Server` and :class:`ServerConnection`.

Each accepted connection is a :class:`ServerConnection` protocol. No task
exists for it until a complete HTTP request has arrived; then one task answers
the handshake (``process_request``, subprotocol selection) and runs the
handler. Whatever goes wrong in one connection is logged and contained there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Union

from .. import __version__
from ..exceptions import ConnectionClosed, NegotiationError, RateLimited, Rejected, RemoteProtocolError
from ..protocol.connection import ServerConnection as _ServerCore
from ..protocol.connection import State
from ..protocol.events import Accept, Event, Reject, Request
from ..protocol.handshake import error_reject
from ..protocol.headers import Headers
from ..protocol.limits import Limits
from ..protocol.proxy_header import ProxyHeader
from .connection import (
    DEFAULT_MAX_SIZE,
    Compression,
    Connection,
    MessageLimiter,
    PingLimiter,
    _deflate_options,
    _limits,
)
from .lingering import linger
from .proxy_header import PROXY_PROTOCOLS, IPNetwork, ProxyHeaderReader, proxy_versions, trusted_networks
from .tls_transport import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    TLSProtocol,
    tls_server_factory,
)

__all__ = [
    "Guard",
    "ConnectionLimiter",
    "Admission",
    "rejection",
    "Server",
    "ServerConnection",
    "serve",
    "Handler",
    "ProcessRequest",
    "SelectSubprotocol",
    "SERVER_HEADER",
    "TLS_TRANSPORTS",
    "PROXY_PROTOCOLS",
]

logger = logging.getLogger("wsskit.server")

#: The values of ``serve(tls_transport=...)``: ``"wsskit"`` (the default) runs
#: TLS in :mod:`wsskit.asyncio.tls_transport`, light on memory; ``"asyncio"``
#: uses the event loop's own TLS (``create_server(ssl=...)``).
TLS_TRANSPORTS = ("wsskit", "asyncio")

#: The default ``Server`` header.
SERVER_HEADER = f"wsskit/{__version__}"

#: ``async def handler(connection)``: runs once the connection is open.
Handler = Callable[["ServerConnection"], Awaitable[None]]

#: ``process_request(connection, request)``, sync or async: a
#: :class:`~wsskit.protocol.events.Reject` to answer with, or None to go on.
ProcessRequest = Callable[["ServerConnection", Request], Union[Reject, Awaitable[Union[Reject, None]], None]]

#: ``select_subprotocol(connection, offered)``: the subprotocol to use, or None.
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Union[str, None]]

#: ``guard(connection, request)`` checks a WebSocket request; it returns
#: nothing (or an awaitable of nothing) to let it through, and raises
#: :class:`~wsskit.exceptions.Rejected` to refuse it.
Guard = Callable[["ServerConnection", Request], Union[Awaitable[None], None]]


class Admission(Protocol):
    """One connection's hold on a :class:`ConnectionLimiter`."""

    def handshake_complete(self) -> None:
        """The connection is open: it no longer counts as a handshake in progress."""

    def release(self) -> None:
        """The connection is over, however it ended."""


class ConnectionLimiter(Protocol):
    """Admits or refuses connections by client address, such as
    :class:`wsskit.guards.ConnectionRateLimiter`."""

    def admit(self, ip: str) -> Admission:
        """Admit a connection from ``ip``, or raise :class:`~wsskit.exceptions.Rejected` (429, 503)."""


class ServerConnection(Connection):
    """The server side of a WebSocket connection, given to the handler.

    :attr:`request` is the client's :class:`~wsskit.protocol.events.Request`
    (path, query, headers); :attr:`response` the
    :class:`~wsskit.protocol.events.Accept` the server answered with.
    Behind a trusted proxy that sent a PROXY header, :attr:`remote_address`
    is the client's ``(host, port)`` from the header and
    :attr:`proxy_address` the proxy's own.
    """

    #: The proxy's address when a PROXY header named the client, else None.
    #: (Class attributes: a connection without a proxy stores nothing.)
    proxy_address: Any = None
    _proxied_source: tuple[str, int] | None = None

    def __init__(self, server: Server, core: _ServerCore, **options: Any) -> None:
        super().__init__(core, **options)
        self._server = server
        # The open timeout runs from the TCP accept, so it covers TLS too:
        # asyncio builds the protocol before the TLS handshake starts.
        self._accepted_at = self._loop.time()
        self._open_handle: asyncio.TimerHandle | None = None
        self._logged = False
        #: Offered subprotocols the server must never select: a guard adds the
        #: entries that carry a credential (``access_token.<token>``).
        self.hidden_subprotocols: set[str] = set()
        # The connection limiter's decision, taken once TLS is up.
        self._admission: Admission | None = None
        self._refusal: Rejected | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by asyncio once the transport (and TLS) is up."""
        super().connection_made(transport)
        if self._proxied_source is not None:
            self.remote_address = self._proxied_source
        self._server._connection_made(self)
        limiter = self._server._connection_limiter
        if limiter is not None:
            # Refused connections are answered (429/503) once their request
            # arrives, within the open timeout, and hold no slot meanwhile.
            try:
                self._admission = limiter.admit(_host(self.remote_address))
            except Rejected as exc:
                self._refusal = exc
        timeout = self._server._open_timeout
        if timeout is not None:
            self._open_handle = self._loop.call_at(self._accepted_at + timeout, self._open_timed_out)

    def _use_proxy_header(self, header: ProxyHeader, proxy: Any) -> None:
        # Called before connection_made by the PROXY header reader. LOCAL,
        # UNKNOWN and Unix sources keep the proxy's address.
        if header.source is not None:
            self._proxied_source = header.source
            self.proxy_address = proxy

    def _check_close(self) -> None:
        # After an HTTP error answer, a lingering close (see
        # wsskit.asyncio.lingering) so that a client still sending gets to
        # read the answer instead of a TCP reset.
        transport = self._transport
        if (
            self.response is None
            and self._core.close_transport
            and not self._closing_transport
            and not self._lost
            and not self._eof
            and transport is not None
            and self._server._close_task is None
        ):
            self._closing_transport = True
            linger(transport, self.connection_lost)
            return
        super()._check_close()

    def _on_handshake_event(self, event: Event) -> None:
        if type(event) is Request:
            self.request = event
            self._server._start_task(self)
        else:
            super()._on_handshake_event(event)

    def _open_timed_out(self) -> None:
        self._open_handle = None
        if self._core.state is State.CONNECTING and not self._lost:
            self._log_once(logging.INFO, "opening handshake timed out")
            self.transport.abort()

    def _log_once(self, level: int, message: str, *args: Any) -> None:
        # Routine failures get one line per connection at most.
        if not self._logged:
            self._logged = True
            self.logger.log(level, "%s: " + message, _peer(self.remote_address), *args)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio when the transport is closed."""
        super().connection_lost(exc)
        if self._admission is not None:
            self._admission.release()
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None
        self._server._connection_lost(self)
        failure = self._core.failure
        if failure is not None:
            if isinstance(failure, RemoteProtocolError):
                self._log_once(logging.INFO, "protocol error: %s", failure)
            else:
                self._log_once(logging.INFO, "invalid opening handshake: %s", failure)
        elif self.request is None:
            self._log_once(logging.DEBUG, "connection closed before a request arrived")
        elif exc is not None:
            self._log_once(logging.DEBUG, "connection lost: %s", exc)

    def _shutdown(self) -> None:
        # The server is closing: 1001 "going away" for open connections;
        # ones still in their handshake are just closed.
        if self._lost or self._transport is None:
            return
        if self._core.state is State.CONNECTING:
            self._log_once(logging.DEBUG, "server closing during the opening handshake")
            self._core.fail(1001)
            self._check_close()
        else:
            self._start_close(1001, "going away")

    async def _run(self, handler: Handler) -> None:
        # Answer the handshake, then run the handler and close. Never raises:
        # this task is one connection's whole life on the server.
        if not await self._handshake():
            return
        code, reason = 1000, ""
        try:
            await handler(self)
        except ConnectionClosed as exc:
            self.logger.debug("%r: handler ended: %s", self, exc)
        except Exception:
            self.logger.error("%r: connection handler failed", self, exc_info=True)
            code, reason = 1011, "internal error"
        except asyncio.CancelledError:
            if self._transport is not None and not self._lost:
                self._transport.abort()
            raise
        await self.close(code, reason)

    async def _handshake(self) -> bool:
        # Answer the request: True once the connection is open.
        request = self.request
        assert request is not None
        server = self._server
        try:
            answer = await server._answer(self, request)
        except Exception:
            self._logged = True
            self.logger.error("%r: error while answering the opening handshake", self, exc_info=True)
            answer = server._with_server_header(Reject(500, Headers(), b"Internal Server Error\n"))
        core = self._core
        if self._lost or core.state is not State.CONNECTING:
            return False  # the client left, the timeout struck or the server is closing
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None
        try:
            core.send(answer)
        except NegotiationError as exc:
            # The client's extension offer could not be accepted: its fault.
            answer = server._with_server_header(_plain_reject(400, str(exc)))
            core.send(answer)
        except Exception:
            self.logger.error("%r: invalid answer to the opening handshake", self, exc_info=True)
            self._logged = True
            core.send(server._with_server_header(Reject(500, Headers(), b"Internal Server Error\n")))
            answer = Reject(500)
        if isinstance(answer, Reject):
            self._log_once(
                # The path only: a query may carry a token (access_token=...).
                # Successful plain answers (pages, health checks every second
                # from a load balancer) are routine: DEBUG; refusals: INFO.
                logging.DEBUG if answer.status < 400 else logging.INFO,
                "%s %s answered with HTTP %d",
                request.method,
                request.path,
                answer.status,
            )
            self._flush()
            self._check_close()
            return False
        self.response = answer
        if self._admission is not None:
            self._admission.handshake_complete()
        # Frames the client sent right after its request wait in the core
        # until the Accept; handle them now.
        self._process_events()
        self._start_keepalive()
        return True


class Server:
    """A WebSocket server; :func:`serve` makes one.

    Use it as ``async with serve(...) as server:`` (it closes on exit) or
    ``server = await serve(...)`` then :meth:`serve_forever` or
    :meth:`close` and :meth:`wait_closed`.

    :attr:`connections` holds the open connections whose handler runs.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        subprotocols: Sequence[str] | None,
        select_subprotocol: SelectSubprotocol | None,
        compression: Compression,
        open_timeout: float | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        write_timeout: float | None,
        idle_timeout: float | None,
        max_size: int | None,
        max_queue: int | None,
        write_limit: int,
        limits: Limits | None,
        process_request: ProcessRequest | None,
        server_header: str | None,
        guards: Sequence[Guard] = (),
        connection_limiter: ConnectionLimiter | None = None,
        message_limiter: Callable[[], MessageLimiter] | None = None,
        ping_limiter: Callable[[], PingLimiter] | None = None,
        tls_transport: str = "wsskit",
        proxy_protocol: str | None = None,
        trusted_proxies: Iterable[str | IPNetwork] = (),
    ) -> None:
        if tls_transport not in TLS_TRANSPORTS:
            raise ValueError(f"tls_transport must be one of {TLS_TRANSPORTS}, not {tls_transport!r}")
        self._tls_transport = tls_transport
        self._trusted_proxies = trusted_networks(trusted_proxies)
        self._proxy_versions: tuple[int, ...] | None = None
        if proxy_protocol is not None:
            self._proxy_versions = proxy_versions(proxy_protocol)
            if not self._trusted_proxies:
                raise ValueError("proxy_protocol needs trusted_proxies: the networks its proxies use")
            if tls_transport != "wsskit":
                raise ValueError('proxy_protocol works with tls_transport="wsskit" only')
        elif self._trusted_proxies:
            raise ValueError("trusted_proxies is used only with proxy_protocol")
        self._handler = handler
        self._subprotocols = tuple(subprotocols or ())
        self._select_subprotocol = select_subprotocol
        self._compression = _deflate_options(compression)
        self._limits = _limits(limits, max_size)
        self._open_timeout = open_timeout
        self._process_request = process_request
        self._guards = tuple(guards)
        self._server_header = server_header
        self._connection_limiter = connection_limiter
        self._message_limiter = message_limiter
        self._ping_limiter = ping_limiter
        self._connection_options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "write_timeout": write_timeout,
            "idle_timeout": idle_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "logger": logger,
        }
        self.logger = logger
        #: Open connections whose handler is running.
        self.connections: set[ServerConnection] = set()
        # Every connection with a transport, handshake or not.
        self._all: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # -- life cycle -----------------------------------------------------------------

    async def _start(self, host: str | Sequence[str] | None, port: int | None, **kwargs: Any) -> Server:
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        context = kwargs.get("ssl")
        factory: Callable[[], asyncio.BaseProtocol] = self._make_connection
        if context is not None and self._tls_transport == "wsskit":
            # TLS of our own over the plain TCP transport: the open timeout
            # bounds the handshake, as ssl_handshake_timeout does below.
            kwargs["ssl"] = None
            handshake_timeout = kwargs.pop("ssl_handshake_timeout", self._open_timeout)
            if handshake_timeout is None:
                handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT
            shutdown_timeout = kwargs.pop("ssl_shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
            factory = tls_server_factory(
                self._make_connection,
                context,
                handshake_timeout=handshake_timeout,
                shutdown_timeout=shutdown_timeout,
            )
        elif context is not None and self._open_timeout is not None:
            kwargs.setdefault("ssl_handshake_timeout", self._open_timeout)
        if self._proxy_versions is not None:
            factory = self._proxy_header_factory(factory)
        self._server = await loop.create_server(factory, host, port, **kwargs)
        return self

    def _proxy_header_factory(self, factory: Callable[[], Any]) -> Callable[[], ProxyHeaderReader]:
        # Each accepted connection reads its PROXY header first, then goes
        # to the protocol ``factory`` makes (TLS or the WebSocket connection).
        networks, versions, timeout = self._trusted_proxies, self._proxy_versions, self._open_timeout
        assert versions is not None

        def make() -> ProxyHeaderReader:
            inner = factory()
            connection = inner._app if isinstance(inner, TLSProtocol) else inner
            assert isinstance(inner, asyncio.Protocol) and isinstance(connection, ServerConnection)
            return ProxyHeaderReader(
                inner, connection._use_proxy_header, networks=networks, versions=versions, timeout=timeout
            )

        return make

    def _make_connection(self) -> ServerConnection:
        core = _ServerCore(limits=self._limits, compression=self._compression, defer_failure=True)
        return ServerConnection(
            self,
            core,
            message_limiter=None if self._message_limiter is None else self._message_limiter(),
            ping_limiter=None if self._ping_limiter is None else self._ping_limiter(),
            **self._connection_options,
        )

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    def close(self, close_connections: bool = True) -> asyncio.Task[None]:
        """Stop listening and close the server; await the result to wait for it.

        With ``close_connections`` every open connection gets a Close 1001
        ("going away") and connections still in their handshake are dropped;
        otherwise they go on until their handlers end. Then waits for every
        handler to return and every connection to close. Calling it again
        returns the same task.
        """
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close(close_connections))
        return self._close_task

    async def _close(self, close_connections: bool) -> None:
        assert self._server is not None and self._closed is not None
        self._server.close()
        if close_connections:
            for connection in list(self._all):
                connection._shutdown()
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        while self._all:
            await next(iter(self._all)).wait_closed()
        await self._server.wait_closed()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        assert self._closed is not None
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` finishes; on cancellation, close, then re-raise."""
        try:
            await self.wait_closed()
        except asyncio.CancelledError:
            await asyncio.shield(self.close())
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- per connection ---------------------------------------------------------------

    def _connection_made(self, connection: ServerConnection) -> None:
        self._all.add(connection)
        if self._close_task is not None:
            connection._shutdown()  # accepted just as the server closed

    def _connection_lost(self, connection: ServerConnection) -> None:
        self._all.discard(connection)
        self.connections.discard(connection)

    def _start_task(self, connection: ServerConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._run(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, connection: ServerConnection) -> None:
        try:
            await connection._run(self._wrapped_handler)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours; keep it from the event loop's handler
            logger.exception("%r: unexpected error", connection)
            if connection._transport is not None:
                connection._transport.abort()

    async def _wrapped_handler(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        try:
            await self._handler(connection)
        finally:
            self.connections.discard(connection)

    async def _answer(self, connection: ServerConnection, request: Request) -> Accept | Reject:
        # process_request first (it may serve plain HTTP), then the request's
        # own error, then the guards (Origin, authentication, rate limits), then
        # subprotocols. A guard that raises Rejected is answered with its status.
        try:
            if self._process_request is not None:
                result = self._process_request(connection, request)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    if not isinstance(result, Reject):
                        raise TypeError(f"process_request must return a Reject or None, not {result!r}")
                    return self._with_server_header(result)
            if connection._refusal is not None:
                raise connection._refusal
            if request.error is not None:
                return self._with_server_header(error_reject(request.error))
            for guard in self._guards:
                checked = guard(connection, request)
                if inspect.isawaitable(checked):
                    await checked
        except Rejected as exc:
            return self._with_server_header(rejection(exc))
        offered = request.subprotocols
        if connection.hidden_subprotocols:
            offered = tuple(name for name in offered if name not in connection.hidden_subprotocols)
        try:
            subprotocol = self._choose_subprotocol(connection, offered)
        except NegotiationError as exc:
            return self._with_server_header(_plain_reject(400, str(exc)))
        headers = Headers()
        if self._server_header is not None:
            headers["Server"] = self._server_header
        return Accept(subprotocol=subprotocol, headers=headers)

    def _choose_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> str | None:
        if self._select_subprotocol is not None:
            chosen = self._select_subprotocol(connection, offered)
            if chosen is not None and chosen not in offered:
                # Never echo what the client did not offer, nor a hidden
                # entry: a bug of the server's, answered with 500.
                raise ValueError(f"select_subprotocol chose {chosen!r}, which is not among those offered")
            return chosen
        # The client's order is its preference: take the first we support.
        # None in common: go on without one (RFC 6455 §4.2.2 allows it).
        for subprotocol in offered:
            if subprotocol in self._subprotocols:
                return subprotocol
        return None

    def _with_server_header(self, reject: Reject) -> Reject:
        if self._server_header is None or "Server" in reject.headers:
            return reject
        headers = Headers(reject.headers)
        headers["Server"] = self._server_header
        return Reject(reject.status, headers, reject.body)


def rejection(exc: Rejected) -> Reject:
    """The HTTP answer to a guard's refusal: its status, headers and message.

    A :class:`~wsskit.exceptions.RateLimited` refusal carries ``Retry-After``
    (RFC 9110 §10.2.3), in whole seconds and at least 1.
    """
    reject = _plain_reject(exc.status, str(exc))
    headers = Headers(reject.headers)
    headers.update(exc.headers)
    if isinstance(exc, RateLimited) and "Retry-After" not in headers:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return Reject(reject.status, headers, reject.body)


def _plain_reject(status: int, message: str) -> Reject:
    return Reject(status, Headers([("Content-Type", "text/plain; charset=utf-8")]), f"{message}\n".encode())


def _host(address: Any) -> str:
    # The IP a connection limiter counts: "" for a Unix socket's peer.
    if isinstance(address, tuple) and address:
        return str(address[0])
    return ""


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class _Serve:
    """What :func:`serve` returns: await it, or use it with ``async with``."""

    def __init__(self, server: Server, host: Any, port: int | None, kwargs: dict[str, Any]) -> None:
        self._server = server
        self._host = host
        self._port = port
        self._kwargs = kwargs

    def __await__(self) -> Generator[Any, None, Server]:
        return self._server._start(self._host, self._port, **self._kwargs).__await__()

    async def __aenter__(self) -> Server:
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()


def serve(
    handler: Handler,
    host: str | Iterable[str] | None = None,
    port: int | None = None,
    *,
    ssl: _ssl.SSLContext | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
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
    process_request: ProcessRequest | None = None,
    guards: Sequence[Guard] = (),
    connection_limiter: ConnectionLimiter | None = None,
    message_limiter: Callable[[], MessageLimiter] | None = None,
    ping_limiter: Callable[[], PingLimiter] | None = None,
    server_header: str | None = SERVER_HEADER,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    tls_transport: str = "wsskit",
    proxy_protocol: str | None = None,
    trusted_proxies: Iterable[str | IPNetwork] = (),
    **create_server_kwargs: Any,
) -> _Serve:
    """Serve WebSocket connections on ``host``:``port`` with ``handler``.

    ``await serve(...)`` returns the listening :class:`Server`;
    ``async with serve(...) as server:`` closes it on exit. ``handler(ws)``
    runs once a connection is open; when it returns the connection closes
    with 1000, when it raises the traceback is logged and it closes with 1011.

    - ``ssl``: a server TLS context (see :func:`wsskit.tls.server_context`).
    - ``tls_transport``: who runs TLS. ``"wsskit"`` (the default):
      :mod:`wsskit.asyncio.tls_transport`, about 30 KiB per idle connection
      where asyncio's TLS holds about 290 KiB, and failed handshakes get
      their TLS alert; ``"asyncio"``: the event loop's own TLS, as
      ``create_server(ssl=...)`` runs it (the way back if ours misbehaves).
    - ``process_request(connection, request)``, sync or async, may return a
      :class:`~wsskit.protocol.events.Reject` to answer as plain HTTP (a 404,
      a health page); None goes on. A request that is no valid upgrade (a
      plain GET) is then answered with the standard error (426, 400...).
    - ``select_subprotocol(connection, offered)`` picks the subprotocol;
      by default the first offered one in ``subprotocols``, else none. It
      may raise :class:`~wsskit.exceptions.NegotiationError` to answer 400.
    - ``guards``: callables ``guard(connection, request)``, sync or async,
      run in order for every WebSocket request; one that raises
      :class:`~wsskit.exceptions.Rejected` answers with its status (403,
      401 with its headers, 429/503 with ``Retry-After``). The policies in
      :mod:`wsskit.guards` fit, e.g. ``guards=[OriginPolicy(["https://example.com"])]``.
    - ``connection_limiter``, e.g. :class:`wsskit.guards.ConnectionRateLimiter`:
      admits each connection by client IP once TLS is up (per-IP rate,
      per-IP and total caps, handshakes in progress); a refused one is
      answered 429 or 503 with ``Retry-After`` when its request arrives.
      Behind a proxy every client has the proxy's address: limit there,
      or have the proxy send a PROXY header (``proxy_protocol``).
    - ``message_limiter``: a factory called once per connection, e.g.
      ``lambda: MessageRateLimiter(100, 2**20)``; a peer over its message or
      byte rate is closed with 1008 and the limiter's reason.
    - ``ping_limiter``: a factory called once per connection, e.g.
      ``lambda: PingFloodGuard(10)``; Pings over its rate get no Pong
      (RFC 6455 §5.5.3), so a flood costs no writes.
    - ``open_timeout``: TLS and HTTP handshake must end in this time or the
      transport is dropped.
    - ``proxy_protocol``: ``"v1"``, ``"v2"`` or ``"v1v2"`` (the PROXY
      header versions accepted; HAProxy ``send-proxy-v2`` sends v2, nginx
      ``proxy_protocol on;`` v1), with ``trusted_proxies``: the networks the
      proxies connect from (``["10.0.0.0/8", "2001:db8::1"]``). Every
      connection must then come from a trusted proxy and start with a
      header, read before TLS within ``open_timeout``; others are closed
      without an answer and logged at INFO. The header's source becomes
      ``remote_address``, which the connection limiter and log lines use.
      Needs ``tls_transport="wsskit"``. See :mod:`wsskit.asyncio.proxy_header`.
    - The other options are as for :func:`~wsskit.asyncio.client.connect`;
      ``sock``, ``reuse_port`` and ``create_server_kwargs`` go to
      :meth:`asyncio.loop.create_server`.

    Raises :class:`OSError` when the address cannot be bound (on await) and
    :class:`ValueError` for invalid options.
    """
    server = Server(
        handler,
        subprotocols=subprotocols,
        select_subprotocol=select_subprotocol,
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
        process_request=process_request,
        server_header=server_header,
        guards=guards,
        connection_limiter=connection_limiter,
        message_limiter=message_limiter,
        ping_limiter=ping_limiter,
        tls_transport=tls_transport,
        proxy_protocol=proxy_protocol,
        trusted_proxies=trusted_proxies,
    )
    kwargs = dict(create_server_kwargs, ssl=ssl, sock=sock)
    if reuse_port:
        kwargs["reuse_port"] = True
    return _Serve(server, host, port, kwargs)
