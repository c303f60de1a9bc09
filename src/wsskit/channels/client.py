"""The channels client: subscribe, publish and resume over ``wsskit.channels.v1``.

:class:`Client` keeps one WebSocket connection to a channels endpoint (a
:class:`~wsskit.channels.Hub`, ``/channels`` on ``wsskit serve``) and, when
the server closes it with a code that allows it (see
:func:`~wsskit.channels.wire.should_reconnect`) or the network drops it,
opens a new one after a random, growing delay (full jitter, a
:class:`~wsskit.reconnect.ReconnectPolicy`). On each new connection it
subscribes again to every channel with ``since`` set to the last position it
received, so that every missed publication arrives in the reply, in order,
exactly once, before any live one; or the server answers ``recovered:
false`` and the subscription's ``on_recovery(False, 0)`` tells the
application to reload its state. Commands in flight when a connection drops
are sent again on the next one, except those that are not safe to repeat; a
publish is safe because it carries an idempotency key (a random one by
default).

Every callback (``on_publication``, ``on_join``, ``on_leave``,
``on_recovery``, ``on_error``, ``on_connect``, ``on_disconnect``,
``on_reconnecting``) may be a function or a coroutine function. They run one
at a time, in the order of the events, in a task of their own: a callback may
await the client's commands, and a slow one delays the next callbacks but not
the reading of the connection.

::

    async with Client("wss://example.com/channels", token=token) as client:
        sub = await client.subscribe("chat:lobby", on_message, on_recovery=reload)
        await client.publish("chat:lobby", {"text": "hello"})
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Union

from ..asyncio.client import ClientConnection, connect
from ..exceptions import ConnectionClosed, GiveUp, InvalidState, NegotiationError, WebSocketError
from ..reconnect import ReconnectPolicy
from .backplanes.base import ClientInfo
from .wire import SUBPROTOCOL, ErrorCode, Position, check_channel, encode, should_reconnect

__all__ = [
    "Client",
    "Subscription",
    "ChannelMessage",
    "HistoryPage",
    "ChannelError",
    "ChannelProtocolError",
    "DEFAULT_POLICY",
]

logger = logging.getLogger("wsskit.channels.client")

#: How a channels client reconnects by default: a first delay up to 1 s, then
#: up to 0.5, 1, 2 ... seconds, never more than 30 (the protocol's advice).
DEFAULT_POLICY = ReconnectPolicy(first_delay=1.0, initial_delay=0.5, factor=2.0, max_delay=30.0)

# The close code a client uses when it drops a connection to resume on a new
# one (a gap in the pushes, a resubscription the server could not serve now).
_RESYNC = 4002
# Error codes after which a resubscription is worth retrying (on a new connection).
_TRANSIENT = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE, ErrorCode.TOO_MANY_REQUESTS})

Callback = Callable[..., Union[Awaitable[None], None]]


class ChannelError(WebSocketError):
    """The server answered a command with an error: :attr:`code` and :attr:`message`.

    Codes are those of :class:`~wsskit.channels.wire.ErrorCode` (102 bad
    request, 103 permission denied, 108 unavailable...).
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A publication received in ``channel``: its ``offset``, its stream's ``epoch``, and ``data``."""

    channel: str
    offset: int
    epoch: str
    data: Any


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The answer to :meth:`Client.history`.

    ``offset`` and ``epoch`` are the channel's latest position; ``recovered``
    is False when the history asked for (``since``) is gone.
    """

    epoch: str
    offset: int
    recovered: bool
    publications: tuple[ChannelMessage, ...]


class ChannelProtocolError(WebSocketError):
    """The server sent something that is not the channels protocol.

    Raised by a command whose reply is malformed; a malformed push or reply
    read by the client closes the connection with 4008, without reconnecting.
    """


@dataclass(eq=False)
class _Pending:
    # One command awaiting its reply: on the wire (``id`` set) or waiting for a connection.
    cmd: str
    fields: dict[str, Any]
    # "retry": sent again on the next connection; "drop": ends with the
    # connection; "done": the loss of the connection is as good as a reply.
    on_loss: str = "retry"
    future: asyncio.Future[Any] | None = None
    handler: Callable[[dict[str, Any]], None] | None = None
    id: int = 0


class Subscription:
    """A subscription to one channel; :meth:`Client.subscribe` makes it.

    :attr:`position` is the last place in the stream the client received
    (from a publication or a subscribe reply); the client resumes from it.
    :attr:`active` is False once unsubscribed or refused (:attr:`error` then says why).
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        on_publication: Callback,
        *,
        on_join: Callback | None,
        on_leave: Callback | None,
        on_recovery: Callback | None,
        on_error: Callback | None,
        since: Position | None,
        token: str | None,
    ) -> None:
        self.channel = channel
        self.position: Position | None = since
        self.active = True
        self.error: ChannelError | None = None
        self._client = client
        self._on_publication = on_publication
        self._on_join = on_join
        self._on_leave = on_leave
        self._on_recovery = on_recovery
        self._on_error = on_error
        self._token = token
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ever_subscribed = False
        # True between a subscribe reply and the end of its connection.
        self._live = False
        # The connection its last subscribe command went on.
        self._sent_on: ClientConnection | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} at {self.position} active={self.active}>"

    @property
    def offset(self) -> int | None:
        """The last offset received, or None before the first."""
        return None if self.position is None else self.position.offset

    @property
    def epoch(self) -> str | None:
        """The epoch of the last position received, or None before the first."""
        return None if self.position is None else self.position.epoch

    async def unsubscribe(self) -> None:
        """Stop receiving the channel's publications. Does nothing when not active."""
        await self._client._unsubscribe(self)

    # -- called by the client's reader ------------------------------------------------

    def _command(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"channel": self.channel}
        if self.position is not None:
            fields["since"] = {"offset": self.position.offset, "epoch": self.position.epoch}
        if self._token is not None:
            fields["token"] = self._token
        return fields

    def _on_reply(self, reply: dict[str, Any], resumed: bool) -> None:
        client = self._client
        if not self.active:
            return
        if "error" in reply:
            error = _error(reply)
            if self._ever_subscribed and error.code in _TRANSIENT:
                logger.info("resubscribing to %r failed (%s): reconnecting", self.channel, error)
                client._resync()
                return
            self._end(error)
            return
        result = _object(reply.get("result"))
        epoch, offset = _str(result.get("epoch")), _int(result.get("offset"))
        recovered = result.get("recovered")
        if not isinstance(recovered, bool):
            raise ChannelProtocolError("recovered is a boolean")
        publications = [_object(p) for p in _list(result.get("publications"))]
        since = self.position
        missed = 0
        for publication in publications:
            message = ChannelMessage(
                self.channel, _int(publication.get("offset")), epoch, publication.get("data")
            )
            if since is not None and message.epoch == since.epoch and message.offset <= since.offset:
                continue  # held already
            client._emit(self._on_publication, message)
            missed += 1
        self.position = Position(offset, epoch)
        self._live = True
        first = not self._ever_subscribed
        self._ever_subscribed = True
        if since is not None and self._on_recovery is not None:
            # After the recovered publications and before any live one.
            client._emit(self._on_recovery, recovered, missed)
        if first and not self._ready.done():
            self._ready.set_result(None)

    def _on_push(self, push: dict[str, Any], kind: str) -> None:
        if not self._live:
            return
        if kind == "pub":
            offset, epoch = _int(push.get("offset")), _str(push.get("epoch"))
            position = self.position
            if position is not None:
                if epoch == position.epoch and offset <= position.offset:
                    return  # a duplicate: delivered already
                expected = position.offset + 1 if epoch == position.epoch else 1
                if offset != expected:
                    # A gap the server should never leave: resume from what we hold.
                    logger.warning("%r: a gap before offset %d: resuming", self, offset)
                    self._client._resync()
                    return
            self.position = Position(offset, epoch)
            self._client._emit(
                self._on_publication, ChannelMessage(self.channel, offset, epoch, push.get("data"))
            )
        else:
            info = _object(push.get("info"))
            user = info.get("user")
            if user is not None and not isinstance(user, str):
                raise ChannelProtocolError("info.user is a string or null")
            callback = self._on_join if kind == "join" else self._on_leave
            if callback is not None:
                self._client._emit(callback, ClientInfo(_str(info.get("client")), user))

    def _end(self, error: ChannelError | None) -> None:
        # The subscription is over: unsubscribed, refused, or the client closed.
        self.active = False
        self._live = False
        if error is not None:
            self.error = error
            logger.warning("%r: the server refused the subscription: %s", self, error)
        if self._client._subscriptions.get(self.channel) is self:
            del self._client._subscriptions[self.channel]
        if not self._ready.done():
            self._ready.set_exception(error if error is not None else InvalidState("unsubscribed"))
            self._ready.exception()  # retrieved: nobody may be waiting any more
        elif error is not None and self._on_error is not None:
            self._client._emit(self._on_error, error)


class Client:
    """A channels client over one reconnecting WebSocket connection to ``url``.

    - ``ssl``: the TLS context (default: verifying, see :func:`wsskit.asyncio.connect`).
    - ``token``: a bearer token, sent as ``Authorization: Bearer <token>``.
    - ``headers``: more request headers.
    - ``reconnect``: True (:data:`DEFAULT_POLICY`), a
      :class:`~wsskit.reconnect.ReconnectPolicy` (its delays, attempts and
      ``stable_after`` are used; which close codes are retried follows the
      protocol's table, :func:`~wsskit.channels.wire.should_reconnect`), or
      False: the first lost connection ends the client.
    - ``timeout``: how long a command waits for its reply, connection time included.
    - ``on_connect()``: a connection is open and every subscription was
      sent on it (their replies, with recovered publications, follow);
      ``on_disconnect(code, reason)``: a connection ended (1006 when it
      dropped); ``on_reconnecting(attempt, delay)``: the next attempt waits
      ``delay`` seconds.
    - ``options``: passed to :func:`wsskit.asyncio.connect` (``open_timeout``,
      ``ping_interval``, ``max_size``, ``proxy``...).

    Use ``async with Client(...) as client:``, or :meth:`connect` and :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl: _ssl.SSLContext | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        reconnect: bool | ReconnectPolicy = True,
        timeout: float = 10.0,
        on_connect: Callback | None = None,
        on_disconnect: Callback | None = None,
        on_reconnecting: Callback | None = None,
        **options: Any,
    ) -> None:
        if isinstance(reconnect, ReconnectPolicy):
            self._policy: ReconnectPolicy | None = reconnect
        elif isinstance(reconnect, bool):
            self._policy = DEFAULT_POLICY if reconnect else None
        else:
            raise TypeError(f"reconnect must be a bool or a ReconnectPolicy, not {reconnect!r}")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        for name in ("subprotocols", "additional_headers", "reconnect", "on_reconnecting", "ssl"):
            if name in options:
                raise TypeError(f"{name} is not an option of a channels client")
        self.url = url
        self.timeout = timeout
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_reconnecting = on_reconnecting
        #: What ended the client when it did not end by :meth:`close`: the last
        #: :class:`~wsskit.exceptions.ConnectionClosed`, a failed attempt, a :class:`GiveUp`.
        self.failure: BaseException | None = None
        self._ssl = ssl
        self._headers: list[tuple[str, str]] = list((headers or {}).items())
        if token is not None:
            self._headers.append(("Authorization", f"Bearer {token}"))
        self._options = options
        self._subscriptions: dict[str, Subscription] = {}
        self._ws: ClientConnection | None = None
        self._ready = False  # resubscribed and the backlog sent on self._ws
        self._broken = False  # self._ws is being dropped: ignore what it still says
        self._want_resync = False
        self._next_id = 0
        self._inflight: dict[int, _Pending] = {}
        self._backlog: deque[_Pending] = deque()
        self._events: asyncio.Queue[tuple[Callback, tuple[Any, ...]] | None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._closed = asyncio.Event()
        self._connected = asyncio.Event()  # set once the first connection is ready
        self._started = False
        self._tasks: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "open" if self._ready else "connecting"
        return f"<channels.Client {state} channels={len(self._subscriptions)}>"

    @property
    def connected(self) -> bool:
        """Whether a connection is open and every subscription was sent on it."""
        return self._ready and not self._broken

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """The active subscriptions, by channel."""
        return dict(self._subscriptions)

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the first connection; later ones open on their own.

        Returns once the connection is open and the subscriptions and commands
        made meanwhile were sent.

        Raises what :func:`wsskit.asyncio.connect` raises (:class:`OSError`,
        :class:`TimeoutError`, :class:`~wsskit.exceptions.InvalidStatus`...)
        and :class:`~wsskit.exceptions.NegotiationError` when the server does
        not speak ``wsskit.channels.v1``; :class:`InvalidState` when called twice.
        """
        if self._started:
            raise InvalidState("the client was started already")
        self._started = True
        try:
            ws = await self._open()
        except BaseException:
            self._closed.set()
            raise
        self._events = asyncio.Queue()
        self._dispatcher = asyncio.create_task(self._dispatch())
        self._runner = runner = asyncio.create_task(self._run(ws))
        # Back once every subscription and waiting command is on the wire, or the client ended.
        ready = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait([ready, runner], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._connected.is_set():
            raise self._closed_error()

    async def close(self) -> None:
        """Close the connection and stop reconnecting; pending commands fail.

        Callbacks already due still run before this returns (unless called
        from a callback).
        """
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        self._finish(None)
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher is not asyncio.current_task():
            await asyncio.gather(dispatcher, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Wait until the client is over (closed, or ended for good: see :attr:`failure`)."""
        await self._closed.wait()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- commands -----------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        on_publication: Callback,
        *,
        on_join: Callback | None = None,
        on_leave: Callback | None = None,
        on_recovery: Callback | None = None,
        on_error: Callback | None = None,
        since: Position | None = None,
        token: str | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``; return the :class:`Subscription` once the server confirmed it.

        ``on_publication(message)`` gets each :class:`ChannelMessage`, in
        offset order, once. ``on_join(info)`` / ``on_leave(info)`` get a
        :class:`~wsskit.channels.ClientInfo` in namespaces that announce them.
        ``on_recovery(recovered, missed)`` is called after each resubscription
        that resumed from a position (every reconnect, and the first subscribe
        when ``since`` is given): ``recovered`` True when every missed
        publication was delivered (``missed`` of them, before this call),
        False when they are lost and the application should reload its state.
        ``on_error(error)``: the server refused a resubscription for good
        (a :class:`ChannelError` such as 103); the subscription is over.
        ``token``: a channel token for channels that need one.

        Raises :class:`ChannelError` (106 when already subscribed here, or the
        server's refusal), :class:`ValueError` for an invalid channel name,
        :class:`TimeoutError`, and :class:`~wsskit.exceptions.ConnectionClosed`
        when the client is closed.
        """
        check_channel(channel)
        self._check_open()
        if channel in self._subscriptions:
            raise ChannelError(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed")
        subscription = Subscription(
            self,
            channel,
            on_publication,
            on_join=on_join,
            on_leave=on_leave,
            on_recovery=on_recovery,
            on_error=on_error,
            since=since,
            token=token,
        )
        self._subscriptions[channel] = subscription
        ws = self._ws
        if ws is not None and self._ready and not self._broken:
            subscription._sent_on = ws
            await self._send(ws, self._subscribe_command(subscription))
        # Otherwise the connection being opened or resumed subscribes it with the others.
        try:
            await asyncio.wait_for(asyncio.shield(subscription._ready), self.timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(WebSocketError, asyncio.TimeoutError):
                await self._unsubscribe(subscription)
            raise TimeoutError(f"no reply to subscribe {channel!r} within {self.timeout} s") from None
        return subscription

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None, token: str | None = None
    ) -> Position:
        """Publish ``data`` (any JSON value) to ``channel``; return its position (offset, epoch).

        The publish carries ``idempotency_key`` (by default a random one), so
        that when the connection drops before the reply, sending it again on
        the next connection stores it once. Raises :class:`ChannelError`
        (103, 108...), :class:`ValueError` for an invalid channel or data JSON
        cannot carry, :class:`TimeoutError`, and
        :class:`~wsskit.exceptions.ConnectionClosed` once the client is closed.
        """
        check_channel(channel)
        fields: dict[str, Any] = {
            "channel": channel,
            "data": data,
            "idempotency_key": idempotency_key if idempotency_key is not None else secrets.token_urlsafe(18),
        }
        if token is not None:
            fields["token"] = token
        result = await self._call("publish", fields)
        return Position(_int(result.get("offset")), _str(result.get("epoch")))

    async def history(
        self,
        channel: str,
        *,
        since: Position | None = None,
        limit: int | None = None,
        token: str | None = None,
    ) -> HistoryPage:
        """Read ``channel``'s history: the last ``limit`` publications, or those after ``since``.

        Raises like :meth:`publish`.
        """
        check_channel(channel)
        fields: dict[str, Any] = {"channel": channel}
        if since is not None:
            fields["since"] = {"offset": since.offset, "epoch": since.epoch}
        if limit is not None:
            fields["limit"] = limit
        if token is not None:
            fields["token"] = token
        result = await self._call("history", fields)
        epoch = _str(result.get("epoch"))
        recovered = result.get("recovered")
        if not isinstance(recovered, bool):
            raise ChannelProtocolError("recovered is a boolean")
        publications = tuple(
            ChannelMessage(channel, _int(p.get("offset")), epoch, p.get("data"))
            for p in map(_object, _list(result.get("publications")))
        )
        return HistoryPage(epoch, _int(result.get("offset")), recovered, publications)

    async def presence(self, channel: str, *, token: str | None = None) -> list[ClientInfo]:
        """Who is subscribed to ``channel``, sorted by client id. Raises like :meth:`publish`."""
        check_channel(channel)
        fields: dict[str, Any] = {"channel": channel}
        if token is not None:
            fields["token"] = token
        result = await self._call("presence", fields)
        clients = []
        for info in map(_object, _list(result.get("clients"))):
            user = info.get("user")
            if user is not None and not isinstance(user, str):
                raise ChannelProtocolError("user is a string or null")
            clients.append(ClientInfo(_str(info.get("client")), user))
        return clients

    async def ping(self) -> float:
        """An application-level round trip; return how long it took, in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._call("ping", {})
        return loop.time() - started

    # -- sending --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._started:
            raise InvalidState("connect the client first")
        if self._closing.is_set() or self._closed.is_set():
            raise self._closed_error()

    def _closed_error(self) -> BaseException:
        failure = self.failure
        if isinstance(failure, ConnectionClosed):
            return ConnectionClosed(failure.code, failure.reason)
        error = ConnectionClosed(1000, "the client is closed")
        error.__cause__ = failure
        return error

    async def _call(self, cmd: str, fields: dict[str, Any], on_loss: str = "retry") -> dict[str, Any]:
        self._check_open()
        encode(fields)  # raises ValueError or TypeError now, not in the sender
        pending = _Pending(cmd, fields, on_loss, asyncio.get_running_loop().create_future())
        assert pending.future is not None
        await self._transmit(pending)
        try:
            result: dict[str, Any] = await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except asyncio.TimeoutError:
            self._forget(pending)
            raise TimeoutError(f"no reply to {cmd} within {self.timeout} s") from None
        return result

    def _subscribe_command(self, subscription: Subscription) -> _Pending:
        pending = _Pending("subscribe", subscription._command(), "drop")
        resumed = subscription.position is not None
        pending.handler = lambda reply: subscription._on_reply(reply, resumed)
        return pending

    async def _transmit(self, pending: _Pending) -> None:
        ws = self._ws
        if ws is None or not self._ready or self._broken:
            self._backlog.append(pending)
            return
        await self._send(ws, pending)

    async def _send(self, ws: ClientConnection, pending: _Pending) -> None:
        self._next_id += 1
        pending.id = self._next_id
        self._inflight[pending.id] = pending
        # On a closed connection the end of the session moves the command on.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode({"id": pending.id, "cmd": pending.cmd, **pending.fields}))

    def _forget(self, pending: _Pending) -> None:
        if self._inflight.get(pending.id) is pending:
            del self._inflight[pending.id]
        with contextlib.suppress(ValueError):
            self._backlog.remove(pending)

    async def _unsubscribe(self, subscription: Subscription) -> None:
        if not subscription.active:
            return
        subscription._end(None)
        ws = self._ws
        if ws is None or subscription._sent_on is not ws or self._broken or self._closing.is_set():
            return  # never subscribed on this connection: the server forgot it with the last one
        try:
            await self._call("unsubscribe", {"channel": subscription.channel}, on_loss="done")
        except ChannelError as exc:
            if exc.code != ErrorCode.NOT_SUBSCRIBED:
                raise

    # -- the connection -------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        ws = await connect(
            self.url,
            ssl=self._ssl,
            subprotocols=[SUBPROTOCOL],
            additional_headers=self._headers,
            **self._options,
        )
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "no subprotocol")
            raise NegotiationError(f"the server did not select the subprotocol {SUBPROTOCOL}")
        return ws

    async def _run(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        policy = self._policy
        failures = attempt = 0
        streak_start: float | None = None
        try:
            while True:
                opened_at = loop.time()
                code, reason = await self._session(ws)
                lost_at = loop.time()
                if self.on_disconnect is not None:
                    self._emit(self.on_disconnect, code, reason)
                resync, self._want_resync = self._want_resync, False
                if self._closing.is_set() or policy is None or not (resync or should_reconnect(code)):
                    if not self._closing.is_set():
                        self._finish(ConnectionClosed(code, reason))
                    return
                if lost_at - opened_at >= policy.stable_after:
                    failures = attempt = 0
                    streak_start = lost_at
                else:
                    # Accepted, then dropped at once: as good as refused.
                    failures += 1
                    streak_start = lost_at if streak_start is None else streak_start
                failure: BaseException = ConnectionClosed(code, reason)
                while True:
                    if policy.exhausted(failures, loop.time() - streak_start):
                        give_up = GiveUp(f"gave up reconnecting after {failures} failed attempts", failures)
                        give_up.__cause__ = failure
                        self._finish(give_up)
                        return
                    attempt += 1
                    # RFC 6455 §7.2.3: a random first delay, then longer and longer ones.
                    delay = policy.delay(attempt, failure)
                    logger.info("reconnecting in %.2f s (attempt %d) after: %s", delay, attempt, failure)
                    if self.on_reconnecting is not None:
                        self._emit(self.on_reconnecting, attempt, delay)
                    try:
                        await asyncio.wait_for(self._closing.wait(), delay)
                        return  # closed while waiting
                    except asyncio.TimeoutError:
                        pass
                    try:
                        ws = await self._open()
                    except Exception as exc:
                        if not policy.should_retry(exc):
                            self._finish(exc)
                            return
                        failure = exc
                        failures += 1
                        continue
                    break
                if self._closing.is_set():
                    await ws.close()
                    return
        except Exception as exc:  # a bug: end the client rather than hang its users
            logger.exception("the channels client failed")
            self._finish(exc)

    async def _session(self, ws: ClientConnection) -> tuple[int, str]:
        # Read ws until it closes; meanwhile resubscribe and send the backlog.
        self._ws, self._ready, self._broken = ws, False, False
        if self._closing.is_set():
            await ws.close()  # close() came before self._ws was set
        resume = asyncio.create_task(self._resume(ws))
        try:
            while True:
                message = await ws.recv()
                if self._broken:
                    continue
                try:
                    self._handle(message)
                except ChannelProtocolError as exc:
                    logger.warning("the server broke the channels protocol: %s", exc)
                    self._broken = True
                    # Not the protocol: do not come back (should_reconnect(4008) is False).
                    self._background(ws.close(4008, "bad protocol usage"))
        except ConnectionClosed as exc:
            code, reason = exc.code, exc.reason
        except Exception:
            await ws.close(1011, "client error")
            raise
        finally:
            resume.cancel()
            await asyncio.gather(resume, return_exceptions=True)
            self._ws, self._ready = None, False
            self._lost()
        return code, reason

    async def _resume(self, ws: ClientConnection) -> None:
        # Subscriptions first (made meanwhile included), then the commands that
        # waited; ready only when nothing is left, so that order holds.
        while True:
            subscription = next((s for s in self._subscriptions.values() if s._sent_on is not ws), None)
            if subscription is not None:
                subscription._sent_on = ws
                subscription._live = False
                await self._send(ws, self._subscribe_command(subscription))
            elif self._backlog:
                await self._send(ws, self._backlog.popleft())
            else:
                self._ready = True
                self._connected.set()
                if self.on_connect is not None:
                    self._emit(self.on_connect)
                return

    def _lost(self) -> None:
        # The connection ended: decide the fate of each command it carried.
        carried, self._inflight = list(self._inflight.values()), {}
        retry = []
        for pending in carried:
            if pending.on_loss == "retry":
                retry.append(pending)
            elif pending.on_loss == "done" and pending.future is not None and not pending.future.done():
                pending.future.set_result({})
        for subscription in self._subscriptions.values():
            subscription._live = False
        self._backlog.extendleft(reversed(retry))

    def _resync(self) -> None:
        # Drop this connection and resume on a new one from the positions held.
        ws = self._ws
        if ws is None or self._broken:
            return
        self._broken = True
        self._want_resync = True
        self._background(ws.close(_RESYNC, "resuming"))

    def _background(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, failure: BaseException | None) -> None:
        # The client is over: fail what waits, end the subscriptions, stop the callbacks.
        if self._closed.is_set():
            return
        self._closing.set()
        self.failure = failure
        error = self._closed_error()
        for pending in [*self._inflight.values(), *self._backlog]:
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()
        self._inflight.clear()
        self._backlog.clear()
        for subscription in list(self._subscriptions.values()):
            if not subscription._ready.done():
                subscription._ready.set_exception(error)
                subscription._ready.exception()
            subscription.active = subscription._live = False
        self._subscriptions.clear()
        if self._events is not None:
            self._events.put_nowait(None)
        self._closed.set()
        if failure is not None:
            logger.info("the channels client ended: %s", failure)

    # -- receiving ------------------------------------------------------------------------

    def _handle(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            raise ChannelProtocolError("a binary message")
        try:
            obj = json.loads(message)
        except ValueError:
            raise ChannelProtocolError("not JSON") from None
        obj = _object(obj)
        if "id" in obj:
            pending = self._inflight.pop(_int(obj["id"]), None)
            if pending is None:
                return  # its caller gave up waiting
            if pending.handler is not None:
                pending.handler(obj)
            elif pending.future is not None and not pending.future.done():
                if "error" in obj:
                    pending.future.set_exception(_error(obj))
                else:
                    pending.future.set_result(_object(obj.get("result")))
            return
        kind = obj.get("push")
        if kind not in ("pub", "join", "leave"):
            return  # a push of a later version: ignored
        subscription = self._subscriptions.get(_str(obj.get("channel")))
        if subscription is not None:
            subscription._on_push(obj, kind)

    def _emit(self, callback: Callback, *args: Any) -> None:
        if self._events is not None:
            self._events.put_nowait((callback, args))

    async def _dispatch(self) -> None:
        events = self._events
        assert events is not None
        while True:
            event = await events.get()
            if event is None:
                return
            callback, args = event
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("a channels callback failed: %r", callback)


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChannelProtocolError("expected a JSON object")
    return value


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ChannelProtocolError("expected a JSON array")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChannelProtocolError("expected an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ChannelProtocolError("expected a string")
    return value


def _error(reply: dict[str, Any]) -> ChannelError:
    error = _object(reply.get("error"))
    message = error.get("message")
    return ChannelError(_int(error.get("code")), message if isinstance(message, str) else "error")
