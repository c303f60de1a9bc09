"""The asyncio client: :func:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl as _ssl
import sys
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

from .. import __version__
from ..exceptions import InvalidHandshake, InvalidStatus
from ..protocol.connection import ClientConnection as _ClientCore
from ..protocol.events import Accept, Event, Reject
from ..protocol.headers import Headers, HeadersLike
from ..protocol.limits import Limits
from ..tls import default_client_context
from ..uri import parse_uri
from .connection import DEFAULT_MAX_SIZE, Compression, Connection, _deflate_options, _limits

__all__ = ["ClientConnection", "connect", "Compression", "default_user_agent"]

logger = logging.getLogger("wsskit.client")


def default_user_agent() -> str:
    """The default ``User-Agent``: ``Python/3.x wsskit/<version>``."""
    return f"Python/{sys.version_info.major}.{sys.version_info.minor} wsskit/{__version__}"


class ClientConnection(Connection):
    """The client side of a WebSocket connection; :func:`connect` returns one.

    :attr:`response` holds the server's :class:`~wsskit.protocol.events.Accept`
    (its headers, subprotocol and extensions) once the handshake succeeded.
    """

    def __init__(self, core: _ClientCore, **options: Any) -> None:
        super().__init__(core, **options)
        self.request = core.request
        self._handshake: asyncio.Future[None] = self._loop.create_future()

    def _on_handshake_event(self, event: Event) -> None:
        if type(event) is Accept:
            self.response = event
            if not self._handshake.done():
                self._handshake.set_result(None)
            self._start_keepalive()
        elif type(event) is Reject:
            if not self._handshake.done():
                self._handshake.set_exception(InvalidStatus(event))
        else:
            super()._on_handshake_event(event)

    def _check_close(self) -> None:
        # An invalid response fails the core without an event: report it now
        # rather than when the transport is finally closed.
        failure = self._core.failure
        if failure is not None and not self._handshake.done():
            self._handshake.set_exception(failure)
        super()._check_close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio when the transport is closed."""
        super().connection_lost(exc)
        if not self._handshake.done():
            failure = self._core.failure
            if failure is None:
                failure = InvalidHandshake("connection closed during the opening handshake")
                failure.__cause__ = exc
            self._handshake.set_exception(failure)


class _Connect:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, uri: str, options: dict[str, Any]) -> None:
        self._uri = uri
        self._options = options
        self._connection: ClientConnection | None = None

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._connection = await self._open()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _open(self) -> ClientConnection:
        options = self._options
        wsuri = parse_uri(self._uri)
        context: _ssl.SSLContext | None = options["ssl"]
        if wsuri.secure:
            if context is None:
                context = default_client_context()
        elif context is not None:
            raise ValueError("ssl= is for wss:// URIs; this one is ws://")
        headers = Headers()
        if wsuri.user is not None:
            credentials = f"{wsuri.user}:{wsuri.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        if options["user_agent_header"] is not None:
            headers["User-Agent"] = options["user_agent_header"]
        if options["additional_headers"] is not None:
            headers.update(options["additional_headers"])
        core = _ClientCore(
            wsuri.host_header,
            wsuri.resource_name,
            subprotocols=tuple(options["subprotocols"] or ()),
            headers=headers,
            origin=options["origin"],
            compression=_deflate_options(options["compression"]),
            limits=_limits(options["limits"], options["max_size"]),
            defer_failure=True,
        )
        connection_options = {
            "ping_interval": options["ping_interval"],
            "ping_timeout": options["ping_timeout"],
            "close_timeout": options["close_timeout"],
            "write_timeout": options["write_timeout"],
            "idle_timeout": options["idle_timeout"],
            "max_queue": options["max_queue"],
            "write_limit": options["write_limit"],
            "logger": logger,
        }
        host, port = wsuri.host, wsuri.port
        open_timeout: float | None = options["open_timeout"]

        async def handshake() -> ClientConnection:
            loop = asyncio.get_running_loop()
            transport, connection = await loop.create_connection(
                lambda: ClientConnection(core, **connection_options),
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
            )
            try:
                await connection._handshake
            except BaseException:
                transport.abort()
                raise
            return connection

        if open_timeout is None:
            return await handshake()
        try:
            return await asyncio.wait_for(handshake(), open_timeout)
        except asyncio.TimeoutError:
            # On 3.10 asyncio's TimeoutError is not the builtin one.
            raise TimeoutError(f"opening handshake with {self._uri} timed out") from None


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
) -> _Connect:
    """Open a WebSocket connection to ``uri``.

    Use ``async with connect(uri) as ws:`` (the connection closes on exit)
    or ``ws = await connect(uri)``.

    - ``ssl``: the TLS context for a ``wss://`` URI; by default
      :func:`wsskit.tls.default_client_context` (verifying). Giving one with
      a ``ws://`` URI raises :class:`ValueError`.
    - ``subprotocols``, ``additional_headers``, ``origin``: what the request offers and carries.
    - ``compression``: ``"deflate"``, a
      :class:`~wsskit.protocol.deflate.DeflateOptions`, or None.
    - ``open_timeout``: bound on TCP connect, TLS and the HTTP handshake.
    - ``ping_interval`` / ``ping_timeout``: keepalive; fail with 1011 when a
      ping gets no pong in time. None disables.
    - ``close_timeout``: bound on the closing handshake before aborting.
    - ``write_timeout``: a peer that reads nothing while the write buffer
      stays above ``write_limit`` this long is cut off (1008); None disables.
    - ``idle_timeout``: close with 1001 after this long without a message
      either way (keepalive pings do not count); None (the default) disables.
    - ``max_size``: largest message received (None: no limit); overrides
      ``limits.max_message_size`` unless left at its default.
    - ``max_queue``: received messages buffered before reading pauses.
    - ``write_limit``: write buffer size above which :meth:`send` waits.

    Raises :class:`~wsskit.exceptions.InvalidURI` for a bad URI,
    :class:`OSError` when the connection fails, :class:`TimeoutError` after
    ``open_timeout``, :class:`~wsskit.exceptions.InvalidStatus` when the
    server answers with a status other than 101, and
    :class:`~wsskit.exceptions.InvalidHandshake` (or
    :class:`~wsskit.exceptions.NegotiationError`) for an invalid answer.
    """
    options = {
        "ssl": ssl,
        "subprotocols": subprotocols,
        "additional_headers": additional_headers,
        "origin": origin,
        "compression": compression,
        "open_timeout": open_timeout,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "close_timeout": close_timeout,
        "write_timeout": write_timeout,
        "idle_timeout": idle_timeout,
        "max_size": max_size,
        "max_queue": max_queue,
        "write_limit": write_limit,
        "limits": limits,
        "user_agent_header": user_agent_header,
    }
    # Check cheap arguments now rather than when awaited.
    _deflate_options(compression)
    return _Connect(uri, options)
