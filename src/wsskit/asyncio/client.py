"""The asyncio client: :func:`connect` and :class:`ClientConnection`.

Beyond one connection, :func:`connect` follows redirects of the opening
handshake, goes through HTTP and SOCKS proxies (:mod:`wsskit.proxy`), and,
iterated with ``reconnect=``, opens a new connection each time the previous
one was lost (:mod:`wsskit.reconnect`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
import logging
import random
import ssl as _ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Union
from urllib.parse import urldefrag, urljoin

from .. import __version__
from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from ..protocol.connection import ClientConnection as _ClientCore
from ..protocol.connection import State
from ..protocol.events import Accept, Event, Reject
from ..protocol.headers import Headers, HeadersLike
from ..protocol.limits import Limits
from ..proxy import Proxy, ProxyError, create_proxy_connection, parse_proxy, proxy_from_environment
from ..reconnect import GiveUp, ReconnectPolicy
from ..tls import default_client_context
from ..uri import WebSocketURI, parse_uri
from .connection import DEFAULT_MAX_SIZE, Compression, Connection, _deflate_options, _limits

__all__ = [
    "ClientConnection",
    "connect",
    "Compression",
    "OnReconnecting",
    "REDIRECT_STATUSES",
    "default_user_agent",
]

logger = logging.getLogger("wsskit.client")

#: ``on_reconnecting(attempt, delay, failure)``, sync or async: called before
#: waiting ``delay`` seconds for reconnect attempt number ``attempt`` (1, 2,
#: ... since the connection was lost), ``failure`` being what ended the
#: connection or the previous attempt.
OnReconnecting = Callable[[int, float, BaseException], Union[Awaitable[None], None]]

#: Statuses of the opening handshake that :func:`connect` follows to their
#: ``Location`` (RFC 9110 §15.4). 303 fits too: the upgrade is a GET.
REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})

# Request headers that carry credentials: a redirect to another origin drops them.
_CREDENTIAL_HEADERS = ("Authorization", "Cookie")


def default_user_agent() -> str:
    """The default ``User-Agent``: ``Python/3.x wsskit/<version>``."""
    return f"Python/{sys.version_info.major}.{sys.version_info.minor} wsskit/{__version__}"


class ClientConnection(Connection):
    """The client side of a WebSocket connection; :func:`connect` returns one.

    :attr:`response` holds the server's :class:`~wsskit.protocol.events.Accept`
    (its headers, subprotocol and extensions) once the handshake succeeded.
    Through a proxy, :attr:`remote_address` is the proxy's address.
    """

    def __init__(self, core: _ClientCore, **options: Any) -> None:
        super().__init__(core, **options)
        self.request = core.request
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        # For the reconnecting iterator: how long the connection lived, and
        # whether this side chose to close it.
        self._opened_at: float | None = None
        self._lost_at: float | None = None
        self._closed_locally = False
        # The first bytes of the answer: a TLS record there means ws:// to a wss:// port.
        self._first_bytes = b""

    def data_received(self, data: bytes) -> None:
        """Called by asyncio with bytes from the network: feed them to the core."""
        if len(self._first_bytes) < 2:
            self._first_bytes += data[: 2 - len(self._first_bytes)]
        super().data_received(data)

    def _answer_looks_like_tls(self) -> bool:
        # Nothing at all (a TLS server closes on a GET), or an alert or handshake record.
        return self._first_bytes in (b"", b"\x15\x03", b"\x16\x03")

    def _on_handshake_event(self, event: Event) -> None:
        if type(event) is Accept:
            self.response = event
            self._opened_at = self._loop.time()
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

    def _start_close(self, code: int, reason: str) -> None:
        # close(), the idle timeout, an expired credential: a close this side
        # starts ends a reconnecting loop, whatever its code. (A failure this
        # side detects, such as a keepalive timeout, goes through _fail.)
        if not self._lost and self._core.state in (State.OPEN, State.CONNECTING):
            self._closed_locally = True
        super()._start_close(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio when the transport is closed."""
        self._lost_at = self._loop.time()
        super().connection_lost(exc)
        if not self._handshake.done():
            failure = self._core.failure
            if failure is None:
                failure = InvalidHandshake("connection closed during the opening handshake")
                failure.__cause__ = exc
            self._handshake.set_exception(failure)


class _Connect:
    """What :func:`connect` returns: await it, use it with ``async with``, or iterate it."""

    def __init__(
        self,
        uri: str,
        options: dict[str, Any],
        *,
        policy: ReconnectPolicy | None = None,
        on_reconnecting: OnReconnecting | None = None,
    ) -> None:
        self._uri = uri
        self._options = options
        self._policy = policy
        self._on_reconnecting = on_reconnecting
        self._connection: ClientConnection | None = None
        # Hooks for tests (and for callers with a clock of their own): how the
        # reconnecting loop waits, and where its jitter comes from.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._random: Callable[[], float] = random.random

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

    # -- reconnecting -------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[ClientConnection]:
        """Yield an open connection; with ``reconnect``, a new one each time the last was lost.

        Leaving the loop (``break``, an exception) closes the connection.
        """
        if self._policy is None:
            return self._once()
        return self._reconnecting(self._policy)

    async def _once(self) -> AsyncIterator[ClientConnection]:
        connection = await self._open()
        try:
            yield connection
        finally:
            await connection.close()

    async def _reconnecting(self, policy: ReconnectPolicy) -> AsyncIterator[ClientConnection]:
        loop = asyncio.get_running_loop()
        failures = 0  # failed attempts in a row, unstable connections included
        attempt = 0  # reconnect attempts since the connection was lost
        streak_start: float | None = None  # when the connection was lost (or the first attempt failed)
        failure: BaseException
        while True:
            started = loop.time()
            try:
                connection = await self._open()
            except Exception as exc:
                if not _should_retry(policy, exc):
                    raise
                failure = exc
                failures += 1
                if streak_start is None:
                    streak_start = started
            else:
                try:
                    yield connection
                except BaseException:
                    await connection.close()
                    raise
                ended = await _how_it_ended(connection)
                if ended is None or not _should_retry(policy, ended):
                    logger.debug("%s: connection ended for good: %s", _display(self._uri), ended or "here")
                    return
                failure = ended
                lost_at = connection._lost_at if connection._lost_at is not None else loop.time()
                opened_at = connection._opened_at if connection._opened_at is not None else lost_at
                if lost_at - opened_at >= policy.stable_after:
                    failures, attempt, streak_start = 0, 0, lost_at
                else:
                    # Accepted, then dropped at once: as good as refused.
                    failures += 1
                    if streak_start is None:
                        streak_start = lost_at
            elapsed = loop.time() - streak_start
            if policy.exhausted(failures, elapsed):
                raise GiveUp(
                    f"gave up reconnecting to {_display(self._uri)} after {failures} failed "
                    f"attempt{'s' if failures != 1 else ''} in {elapsed:.1f} s: {failure}",
                    failures,
                ) from failure
            attempt += 1
            # RFC 6455 §7.2.3: a random first delay, then longer and longer ones.
            delay = policy.delay(attempt, _policy_view(failure), random=self._random)
            logger.info(
                "%s: reconnecting in %.2f s (attempt %d) after: %s",
                _display(self._uri),
                delay,
                attempt,
                failure,
            )
            if self._on_reconnecting is not None:
                result = self._on_reconnecting(attempt, delay, failure)
                if inspect.isawaitable(result):
                    await result
            await self._sleep(delay)

    # -- opening ------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        # open_timeout bounds everything: proxies, redirects, TCP, TLS, HTTP.
        open_timeout: float | None = self._options["open_timeout"]
        if open_timeout is None:
            return await self._follow_redirects()
        try:
            return await asyncio.wait_for(self._follow_redirects(), open_timeout)
        except asyncio.TimeoutError:
            # On 3.10 asyncio's TimeoutError is not the builtin one.
            raise TimeoutError(f"opening handshake with {_display(self._uri)} timed out") from None

    async def _follow_redirects(self) -> ClientConnection:
        wsuri = parse_uri(self._uri)
        if not wsuri.secure and self._options["ssl"] is not None:
            raise ValueError("ssl= is for wss:// URIs; this one is ws://")
        first = wsuri
        max_redirects: int = self._options["max_redirects"]
        redirects = 0
        credentials = True  # False once a redirect left the first URI's origin
        while True:
            try:
                return await self._open_one(wsuri, credentials)
            except InvalidStatus as exc:
                if exc.response.status not in REDIRECT_STATUSES or max_redirects == 0:
                    raise
                locations = exc.response.headers.get_all("Location")
                if not locations:
                    raise
                if len(locations) > 1:
                    raise InvalidHandshake(f"redirect with {len(locations)} Location headers") from exc
                if redirects >= max_redirects:
                    raise InvalidHandshake(
                        f"too many redirects: more than {max_redirects} from {_display(self._uri)}"
                    ) from exc
                redirects += 1
                target = _redirect_target(wsuri, locations[0], exc)
                if _origin(target) != _origin(first):
                    credentials = False
                elif credentials and target.user is None:
                    target = dataclasses.replace(target, user=wsuri.user, password=wsuri.password)
                logger.debug(
                    "%s: HTTP %d redirect to %s",
                    _display_uri(wsuri),
                    exc.response.status,
                    _display_uri(target),
                )
                wsuri = target

    async def _open_one(self, wsuri: WebSocketURI, credentials: bool) -> ClientConnection:
        # One opening handshake with wsuri, directly or through a proxy.
        options = self._options
        context: _ssl.SSLContext | None = None
        if wsuri.secure:
            context = options["ssl"] or default_client_context()
        headers = Headers()
        if wsuri.user is not None:
            token = f"{wsuri.user}:{wsuri.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        if options["user_agent_header"] is not None:
            headers["User-Agent"] = options["user_agent_header"]
        if options["additional_headers"] is not None:
            extra = Headers(options["additional_headers"])
            if not credentials:
                for name in _CREDENTIAL_HEADERS:
                    extra.remove(name)
            headers.update(extra)
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
        proxy = self._proxy_for(wsuri)
        try:
            if proxy is None:
                transport, connection = await asyncio.get_running_loop().create_connection(
                    lambda: ClientConnection(core, **connection_options),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
            else:
                logger.debug("%s: connecting through proxy %s", _display_uri(wsuri), proxy.url)
                transport, connection = await create_proxy_connection(
                    proxy,
                    lambda: ClientConnection(core, **connection_options),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host,
                    proxy_ssl=options["proxy_ssl"],
                    user_agent=options["user_agent_header"],
                )
        except _ssl.SSLError as exc:
            _add_tls_hint(exc)
            raise
        try:
            await connection._handshake
        except InvalidHandshake as exc:
            transport.abort()
            if wsuri.secure or not connection._answer_looks_like_tls():
                raise
            raise _with_hint(exc, _NOT_PLAIN_HINT) from exc.__cause__
        except BaseException:
            transport.abort()
            raise
        return connection

    def _proxy_for(self, wsuri: WebSocketURI) -> Proxy | None:
        setting = self._options["proxy"]
        if isinstance(setting, Proxy):
            return setting
        if setting is not True:
            return None
        url = proxy_from_environment(wsuri)
        if url is None:
            return None
        try:
            return parse_proxy(url)
        except InvalidURI as exc:
            raise InvalidURI(f"proxy from the environment: {exc}") from None


async def _how_it_ended(connection: ClientConnection) -> ConnectionClosed | None:
    """Return how a connection the caller is done with ended; None when this side ended it."""
    if connection.state is State.OPEN:
        # The loop body returned with the connection open: the caller is done.
        await connection.close()
        return None
    await connection.wait_closed()
    if connection._closed_locally:
        return None
    return connection._closed_error()


def _policy_view(failure: BaseException) -> BaseException:
    """Show a proxy's refusal to the reconnect policy as the failure it amounts to.

    An HTTP proxy's answer is judged by its status like the server's (a 502
    or 503 is retried, honouring ``Retry-After``; a 407 is not); a transient
    SOCKS reply like a refused connection.
    """
    if isinstance(failure, ProxyError):
        if failure.response is not None:
            return InvalidStatus(failure.response)
        if failure.transient:
            return ConnectionError(str(failure))
    return failure


def _should_retry(policy: ReconnectPolicy, failure: BaseException) -> bool:
    return policy.should_retry(_policy_view(failure))


def _origin(wsuri: WebSocketURI) -> tuple[bool, str, int]:
    # RFC 6454 §4: scheme, host and port; ws and wss differ.
    return wsuri.secure, wsuri.host, wsuri.port


def _redirect_target(current: WebSocketURI, location: str, response: InvalidStatus) -> WebSocketURI:
    """Resolve a redirect's ``Location`` against ``current`` into the next WebSocket URI.

    ``http``/``https`` map to ``ws``/``wss``; a relative reference is resolved
    (RFC 3986 §5); a fragment is dropped. Raises :class:`InvalidHandshake`
    (its cause the redirect) for another scheme, an invalid URI, or a
    redirect from ``wss://`` to ``ws://``, which would drop TLS.
    """
    base = f"{'https' if current.secure else 'http'}://{current.host_header}{current.path}"
    try:
        joined = urldefrag(urljoin(base, location)).url
    except ValueError as exc:
        raise InvalidHandshake(f"invalid redirect Location {location!r}: {exc}") from response
    scheme, colon, rest = joined.partition(":")
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if not colon or scheme.lower() not in schemes:
        raise InvalidHandshake(f"redirect to a URI not ws, wss, http or https: {location!r}") from response
    try:
        target = parse_uri(schemes[scheme.lower()] + ":" + rest)
    except InvalidURI as exc:
        raise InvalidHandshake(f"invalid redirect Location {location!r}: {exc}") from response
    if current.secure and not target.secure:
        raise InvalidHandshake(
            f"refusing the redirect from {_display_uri(current)} to {_display_uri(target)}: "
            "it would leave TLS (wss:// to ws://)"
        ) from response
    return target


#: Added to the error of a ws:// handshake that got no answer or a TLS record back.
_NOT_PLAIN_HINT = "does the server speak TLS? try wss://"
#: Added (as a note) to the SSLError of a wss:// connection to a server that answered without TLS.
_NOT_TLS_HINT = "the server may not speak TLS: try ws://"
#: Added (as a note) to a certificate verification failure that a CA file would fix.
_UNTRUSTED_HINT = (
    "to trust a private CA, pass ssl=wsskit.tls.client_context(cafile='ca.pem') "
    "(the development CA: see `wsskit cert`)"
)
# OpenSSL's reasons for bytes that are not a TLS record (an HTTP answer, say).
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})
# Verification results that mean "the issuer is not trusted" (X509_V_ERR_*), not a wrong name.
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21})


def _tls_hint(exc: _ssl.SSLError) -> str | None:
    """The advice for a failed TLS handshake, or None: not TLS, or an untrusted CA."""
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return _UNTRUSTED_HINT if exc.verify_code in _UNTRUSTED_CODES else None
    return _NOT_TLS_HINT if exc.reason in _NOT_TLS_REASONS else None


def _add_tls_hint(exc: _ssl.SSLError) -> None:
    # A note (Python 3.11+) keeps the exception's type: callers catch ssl.SSLError
    # and SSLCertVerificationError. On 3.10 the message stays OpenSSL's own.
    hint = _tls_hint(exc)
    if hint is not None and sys.version_info >= (3, 11):
        exc.add_note(hint)


def _with_hint(exc: InvalidHandshake, hint: str) -> InvalidHandshake:
    # The message itself carries the hint (str(exc) is what most callers print);
    # a subclass, whose constructor may differ, gets a note instead (3.11+).
    if type(exc) is InvalidHandshake:
        return InvalidHandshake(f"{exc}: {hint}", exc.status)
    if sys.version_info >= (3, 11):
        exc.add_note(hint)
    return exc


def _display_uri(wsuri: WebSocketURI) -> str:
    # For logs and messages: no credentials, no query (it may hold a token).
    return f"{'wss' if wsuri.secure else 'ws'}://{wsuri.host_header}{wsuri.path.partition('?')[0]}"


def _display(uri: str) -> str:
    try:
        return _display_uri(parse_uri(uri))
    except InvalidURI:
        return "<invalid URI>"


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
    reconnect: bool | ReconnectPolicy = False,
    on_reconnecting: OnReconnecting | None = None,
) -> _Connect:
    """Open a WebSocket connection to ``uri``.

    Use ``async with connect(uri) as ws:`` (the connection closes on exit),
    ``ws = await connect(uri)``, or iterate: ``async for ws in connect(uri,
    reconnect=True):`` yields a new connection each time the previous one
    was lost (see ``reconnect``); leaving the loop closes the connection.

    - ``ssl``: the TLS context for a ``wss://`` URI; by default
      :func:`wsskit.tls.default_client_context` (verifying). Giving one with
      a ``ws://`` URI raises :class:`ValueError`.
    - ``subprotocols``, ``additional_headers``, ``origin``: what the request offers and carries.
    - ``compression``: ``"deflate"``, a
      :class:`~wsskit.protocol.deflate.DeflateOptions`, or None.
    - ``open_timeout``: bound on opening the connection: proxy, redirects,
      TCP connect, TLS and the HTTP handshake.
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
    - ``max_redirects``: how many 301, 302, 303, 307 or 308 answers to follow
      to their ``Location`` (``http``/``https`` become ``ws``/``wss``;
      relative ones are resolved); 0 follows none, the 3xx then raising
      :class:`~wsskit.exceptions.InvalidStatus`. A redirect to another
      origin (scheme, host, port) drops the ``Authorization`` and
      ``Cookie`` headers and the URI's credentials for the rest of the way.
    - ``proxy``: True (the default) takes the proxy from the environment
      (``https_proxy`` for ``wss://``, ``http_proxy`` for ``ws://``,
      ``all_proxy``, honouring ``no_proxy``; see
      :func:`wsskit.proxy.proxy_from_environment`); a URL such as
      ``"http://user:pw@proxy:3128"``, ``"https://..."``, ``"socks5://..."``
      or ``"socks5h://..."`` (SOCKS needs ``wsskit[socks]``) forces one;
      None or False connects directly.
    - ``proxy_ssl``: the TLS context for an ``https://`` proxy (by default
      the verifying default context).
    - ``reconnect``: True or a :class:`~wsskit.reconnect.ReconnectPolicy`
      makes iteration reconnect: after a connection ended with a close code
      the policy retries (1001, 1006, 1011, 1012, 1013, 1014 by default)
      the next one opens after a random, growing delay (RFC 6455 §7.2.3;
      ``Retry-After`` honoured), and so do failed attempts that can succeed
      later (network errors, timeouts, 429 and 5xx answers). Iteration
      stops when a connection ended for good (a 1000 or 1008 from the
      server, a close on this side, the loop body returning with the
      connection open); an attempt that cannot succeed later (401, 403, a
      certificate that does not verify) raises its error; running out of
      attempts or time raises :class:`~wsskit.reconnect.GiveUp` from the
      last failure. A connection that lived less than the policy's
      ``stable_after`` counts as a failed attempt. Awaiting or ``async
      with`` never reconnects. Catch
      :class:`~wsskit.exceptions.ConnectionClosed` in the loop body so the
      loop goes on::

          async for ws in connect(uri, reconnect=True):
              try:
                  async for message in ws:
                      ...
              except ConnectionClosed:
                  continue

    - ``on_reconnecting(attempt, delay, failure)``, sync or async: called
      before each wait with the attempt number (1 after each loss), the
      delay in seconds and what failed; the same is logged at INFO.

    Raises :class:`~wsskit.exceptions.InvalidURI` for a bad URI or proxy
    URL, :class:`OSError` when the connection fails, :class:`TimeoutError`
    after ``open_timeout``, :class:`~wsskit.exceptions.InvalidStatus` when
    the server answers with a status other than 101 (and no redirect to
    follow), :class:`~wsskit.proxy.ProxyError` when a proxy refuses the
    tunnel, and :class:`~wsskit.exceptions.InvalidHandshake` (or
    :class:`~wsskit.exceptions.NegotiationError`) for an invalid answer, a
    redirect that cannot be followed (too many, to another scheme, from
    ``wss://`` to ``ws://``).

    Errors that usually mean a wrong scheme or an untrusted CA carry advice.
    A ``ws://`` handshake that got no answer, or a TLS record, says "does the
    server speak TLS? try wss://" in its message. An :class:`ssl.SSLError`
    keeps its type and message and gets the advice as a note
    (:meth:`BaseException.add_note`, shown in tracebacks; Python 3.11+, none
    on 3.10): "try ws://" when the server answered without TLS, and how to
    trust a private CA with :func:`wsskit.tls.client_context` when the
    certificate's issuer is unknown.
    """
    # Check cheap arguments now rather than when awaited.
    _deflate_options(compression)
    if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
        raise ValueError(f"max_redirects must be an int >= 0, not {max_redirects!r}")
    proxy_setting: Proxy | bool
    if isinstance(proxy, str):
        proxy_setting = parse_proxy(proxy)
    elif proxy is None or isinstance(proxy, bool):
        proxy_setting = bool(proxy)
    else:
        raise TypeError(f"proxy must be a URL, True (from the environment) or None, not {proxy!r}")
    policy: ReconnectPolicy | None
    if isinstance(reconnect, ReconnectPolicy):
        policy = reconnect
    elif isinstance(reconnect, bool):
        policy = ReconnectPolicy() if reconnect else None
    else:
        raise TypeError(f"reconnect must be a bool or a ReconnectPolicy, not {reconnect!r}")
    if on_reconnecting is not None and not callable(on_reconnecting):
        raise TypeError("on_reconnecting must be callable")
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
        "max_redirects": max_redirects,
        "proxy": proxy_setting,
        "proxy_ssl": proxy_ssl,
    }
    return _Connect(uri, options, policy=policy, on_reconnecting=on_reconnecting)
