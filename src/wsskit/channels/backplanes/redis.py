"""The ``redis://`` backplane (``rediss://`` for TLS): nodes sharing one Redis.

Each channel lives in a few keys sharing the hash tag ``{channel}`` (so a
Redis Cluster keeps them in one slot)::

    <prefix>:{<channel>}:m        hash: epoch, top (the last offset), exp (ms)
    <prefix>:{<channel>}:s        stream: entry id "<offset>-0", fields x (expiry, ms) and d (JSON)
    <prefix>:{<channel>}:i:<key>  string: an idempotency key's first publication
    <prefix>:{<channel>}:p        hash: client id -> JSON {"user": ...} (presence)
    <prefix>:{<channel>}:px       sorted set: client id scored by its presence expiry (ms)

and one pub/sub channel, ``<prefix>:c:<channel>``, for live delivery.

A Lua script publishes: it reads (or starts) the stream's epoch, returns the
first publication when the idempotency key was seen in the same epoch within
its window, otherwise takes the next offset, drops history entries past their
lifetime, appends with an exact ``MAXLEN`` (so the stream's first entry is
always the lowest offset retained and a position older than that is reported
as not recovered), stores the key, refreshes the lifetimes and PUBLISHes, all
at once: offset order is history order is delivery order on every node.
Another script reads history, so the position and the entries it returns agree.

Time inside the scripts is Redis's ``TIME`` (one clock for every node), or
the node's ``clock`` when one is given (tests drive it). Lifetimes are also
set as key expiries, so an abandoned channel frees its memory; the logical
expiries stored in the keys decide what is visible.

Live delivery: each node holds one pub/sub connection and one Redis
subscription per channel, shared by its callbacks. :meth:`RedisBackplane.subscribe`
returns once Redis confirmed the SUBSCRIBE. When the connection drops, the
node reconnects with backoff, subscribes again to every channel, and catches
up each channel from the last publication it delivered (or, when none was, from
the position read when the subscription took effect), reading the history:
callbacks get what was published meanwhile, in order, or, when the history no
longer holds it (Redis restarted without persistence: a new epoch), a
:class:`~wsskit.channels.backplanes.base.Reset` (the hub then closes its
sessions with 4002 so that clients resume and learn ``recovered: false``).
Never a silent gap. A probe publishes on a private
channel every ``probe_interval`` seconds and tears the connection down when the
probe does not come back within ``probe_timeout``: a deaf connection does not
go unnoticed.

Presence entries expire ``presence_ttl`` seconds after the node that added
them last refreshed them (it does every third of that), so a crashed node's
clients disappear.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

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
from .memory import new_epoch

try:
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the redis:// backplane needs redis-py: pip install 'wsskit[redis]'") from exc

__all__ = ["RedisBackplane"]

_jitter = secrets.SystemRandom()

logger = logging.getLogger("wsskit.channels.redis")

# -- Lua ---------------------------------------------------------------------------

# Shared by the scripts: the current time in ms (ARGV or Redis TIME), and
# dropping the history entries whose lifetime is over, from the oldest.
_PRELUDE = """
local function now_ms(arg)
  local given = tonumber(arg)
  if given then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function trim_expired(stream, now)
  while true do
    local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
    if #head == 0 then return end
    for _, entry in ipairs(head) do
      if tonumber(entry[2][2]) > now then return end
      redis.call('XDEL', stream, entry[1])
    end
  end
end
-- The stream's epoch and top offset; a missing or expired stream starts anew.
local function open_stream(meta, stream, candidate, now, empty_ttl)
  local m = redis.call('HMGET', meta, 'epoch', 'top', 'exp')
  local exp = tonumber(m[3])
  if m[1] and exp and exp > now then
    return m[1], tonumber(m[2]) or 0
  end
  redis.call('DEL', meta, stream)
  redis.call('HSET', meta, 'epoch', candidate, 'top', 0, 'exp', now + empty_ttl)
  redis.call('PEXPIRE', meta, empty_ttl)
  return candidate, 0
end
"""

# KEYS: meta, stream[, idempotency key]
# ARGV: pub/sub channel, data (JSON), epoch candidate, now ("" = TIME), size,
#       ttl ms, idempotency window ms
# Returns {1, offset, epoch} for a new publication, {0, offset, epoch, data}
# for the first publication with the same idempotency key.
_PUBLISH = (
    _PRELUDE
    + """
local now = now_ms(ARGV[4])
local size, ttl, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local epoch, top = open_stream(KEYS[1], KEYS[2], ARGV[3], now, ttl)
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local till, offset, e, data = string.match(seen, '^(%d+):(%d+):([^:]*):(.*)$')
    if till and tonumber(till) > now and e == epoch then
      return {0, offset, e, data}
    end
  end
end
top = top + 1
trim_expired(KEYS[2], now)
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, top .. '-0', 'x', now + ttl, 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'top', top, 'exp', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
if KEYS[3] and window > 0 then
  redis.call('SET', KEYS[3], (now + window) .. ':' .. top .. ':' .. epoch .. ':' .. ARGV[2], 'PX', window)
end
redis.call('PUBLISH', ARGV[1], '{"o":' .. top .. ',"e":"' .. epoch .. '","d":' .. ARGV[2] .. '}')
return {1, tostring(top), epoch}
"""
)

# KEYS: meta, stream
# ARGV: epoch candidate, now, empty ttl ms, since offset ("" = none), since
#       epoch, limit ("" = none)
# Returns {epoch, top, recovered (0/1), offset, data, offset, data...}.
_HISTORY = (
    _PRELUDE
    + """
local now = now_ms(ARGV[2])
local epoch, top = open_stream(KEYS[1], KEYS[2], ARGV[1], now, tonumber(ARGV[3]))
trim_expired(KEYS[2], now)
local limit = tonumber(ARGV[6])
local out = {epoch, tostring(top), 1}
local entries
if ARGV[4] == '' then
  if limit == nil then
    entries = redis.call('XRANGE', KEYS[2], '-', '+')
  elseif limit == 0 then
    entries = {}
  else
    local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
    entries = {}
    for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
  end
else
  local since = tonumber(ARGV[4])
  if ARGV[5] ~= epoch or since > top then
    out[3] = 0
    return out
  end
  if since < top then
    local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    local lowest = top + 1
    if #first > 0 then lowest = tonumber(string.match(first[1][1], '^(%d+)')) end
    if lowest > since + 1 then
      out[3] = 0
      return out
    end
  end
  if limit == 0 then
    entries = {}
  elseif limit == nil then
    entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+')
  else
    entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+', 'COUNT', limit)
  end
end
for _, entry in ipairs(entries) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][4]
end
return out
"""
)

# KEYS: presence hash, presence expiry zset
# ARGV: now, ttl ms, announce ("1"/"0"), pub/sub channel, join message, then
#       client id, info, client id, info...
_PRESENCE_ADD = (
    _PRELUDE
    + """
local now = now_ms(ARGV[1])
local ttl = tonumber(ARGV[2])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[3] == '1' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""
)

# KEYS: presence hash, presence expiry zset
# ARGV: client id, announce, pub/sub channel, leave message
_PRESENCE_REMOVE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 and ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return removed
"""

# KEYS: presence hash, presence expiry zset
# ARGV: now, ttl ms, client ids (only those still present are refreshed)
_PRESENCE_REFRESH = (
    _PRELUDE
    + """
local now = now_ms(ARGV[1])
local ttl = tonumber(ARGV[2])
local refreshed = 0
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
    refreshed = refreshed + 1
  end
end
if refreshed > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return refreshed
"""
)

# KEYS: presence hash, presence expiry zset
# ARGV: now
# Returns {client id, info, ...} of the entries not expired.
_PRESENCE_LIST = (
    _PRELUDE
    + """
local now = now_ms(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, client in ipairs(expired) do redis.call('HDEL', KEYS[1], client) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
return redis.call('HGETALL', KEYS[1])
"""
)


@dataclass(frozen=True)
class _Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # SHA-1 names a script in EVALSHA; it is not used for security here.
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())


_PUBLISH_SCRIPT = _Script(_PUBLISH)
_HISTORY_SCRIPT = _Script(_HISTORY)
_PRESENCE_ADD_SCRIPT = _Script(_PRESENCE_ADD)
_PRESENCE_REMOVE_SCRIPT = _Script(_PRESENCE_REMOVE)
_PRESENCE_REFRESH_SCRIPT = _Script(_PRESENCE_REFRESH)
_PRESENCE_LIST_SCRIPT = _Script(_PRESENCE_LIST)

# -- the node ------------------------------------------------------------------------


@dataclass(eq=False)
class _Channel:
    # One channel this node is subscribed to.
    callbacks: dict[DeliveryCallback, None] = field(default_factory=dict)
    # Done when Redis confirmed the SUBSCRIBE on the current connection;
    # None when none was sent on it (or there is no connection).
    confirmed: asyncio.Future[None] | None = None
    # The last publication delivered here: (epoch, offset).
    last: tuple[str, int] | None = None
    # The stream's position when the subscription took effect (epoch, offset):
    # where a reconnection catches up from when nothing was delivered yet.
    baseline: tuple[str, int] | None = None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data JSON cannot carry: {exc}") from exc


def _quiet(future: asyncio.Future[None]) -> None:
    # Retrieve a failed future's exception so nobody logs it as never retrieved.
    if not future.cancelled():
        future.exception()


class RedisBackplane(Backplane):
    """A node on a Redis broker at ``url`` (``redis://host:port/db`` or ``rediss://...``).

    Options: ``prefix`` of every key and pub/sub channel; ``timeout`` (seconds)
    for connecting and for each command; ``probe_interval`` and
    ``probe_timeout`` of the pub/sub liveness probe; ``reconnect_delay`` and
    ``reconnect_max_delay`` of the pub/sub reconnection backoff;
    ``presence_ttl`` of a presence entry not refreshed; ``empty_ttl`` of the
    epoch of a channel read but never published to; ``clock`` (seconds) in
    place of Redis's own time, for tests. Every failure of Redis raises
    :class:`~wsskit.exceptions.BackplaneError`.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "wsskit",
        timeout: float = 5.0,
        probe_interval: float = 5.0,
        probe_timeout: float = 2.0,
        reconnect_delay: float = 0.05,
        reconnect_max_delay: float = 5.0,
        presence_ttl: float = 30.0,
        empty_ttl: float = 300.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (
            ("timeout", timeout),
            ("probe_interval", probe_interval),
            ("probe_timeout", probe_timeout),
            ("reconnect_delay", reconnect_delay),
            ("reconnect_max_delay", reconnect_max_delay),
            ("presence_ttl", presence_ttl),
            ("empty_ttl", empty_ttl),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        if not prefix or "{" in prefix:
            raise ValueError("prefix must be non-empty and hold no '{'")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.presence_ttl = presence_ttl
        self.empty_ttl = empty_ttl
        self.clock = clock
        #: Counters for tests and metrics: pub/sub (re)connections, probes failed.
        self.stats: dict[str, int] = {"pubsub_connects": 0, "probe_failures": 0}
        self.node_id = secrets.token_hex(8)
        self._probe_channel = f"{prefix}:probe:{self.node_id}"
        self._started = False
        self._pool: ConnectionPool | None = None
        self._client: Redis | None = None
        self._conn: AbstractConnection | None = None
        self._send_lock = asyncio.Lock()
        self._channels: dict[str, _Channel] = {}
        # Per Redis channel name, the futures awaiting SUBSCRIBE confirmations, in order.
        self._pending: dict[str, collections.deque[asyncio.Future[None]]] = {}
        # While resubscribing: messages held until the history caught up.
        self._held: list[tuple[str, bytes]] | None = None
        self._probe: tuple[str, asyncio.Future[None]] | None = None
        self._present: dict[str, dict[str, ClientInfo]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._connects_changed = asyncio.Condition()

    def __repr__(self) -> str:
        return f"<RedisBackplane {self.node_id} channels={len(self._channels)}>"

    # -- names --------------------------------------------------------------------------

    def _key(self, channel: str, suffix: str) -> str:
        return f"{self.prefix}:{{{channel}}}:{suffix}"

    def _pubsub_name(self, channel: str) -> str:
        return f"{self.prefix}:c:{channel}"

    def _now(self) -> str:
        return "" if self.clock is None else str(round(self.clock() * 1000))

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the command client and the pub/sub connection.

        Raises :class:`~wsskit.exceptions.BackplaneError` when Redis does not answer.
        """
        if self._started:
            return
        self._pool = ConnectionPool.from_url(
            self.url,
            # A publish is never retried behind the caller's back: it could be stored twice.
            retry=Retry(NoBackoff(), 0),
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )
        self._client = Redis(connection_pool=self._pool)
        self._started = True
        try:
            await self._command("PING")
            conn = await self._open_pubsub()
            await self._now_connected()
        except BaseException:
            await self.close()
            raise
        self._tasks = [
            asyncio.create_task(self._pubsub_loop(conn), name=f"wsskit-redis-pubsub-{self.node_id}"),
            asyncio.create_task(self._probe_loop(), name=f"wsskit-redis-probe-{self.node_id}"),
            asyncio.create_task(self._presence_loop(), name=f"wsskit-redis-presence-{self.node_id}"),
        ]

    async def close(self) -> None:
        """Stop the tasks, drop every subscription and disconnect. Idempotent."""
        self._started = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._drop_pubsub()
        self._channels.clear()
        self._present.clear()
        client, self._client, self._pool = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    def subscriptions(self) -> dict[str, int]:
        """How many callbacks this node has subscribed, per channel."""
        return {channel: len(state.callbacks) for channel, state in self._channels.items()}

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up and subscribed."""
        return self._connected.is_set()

    @property
    def ready(self) -> bool:
        """True while started and the pub/sub connection is up, subscribed and caught up."""
        return self._started and self._connected.is_set()

    async def wait_connected(self, *, connects: int = 1) -> None:
        """Wait until the pub/sub connection is up, its channels subscribed again
        and caught up, and it was made ``connects`` times in all (2: the first
        reconnection)."""
        async with self._connects_changed:
            await self._connects_changed.wait_for(
                lambda: self._connected.is_set() and self.stats["pubsub_connects"] >= connects
            )

    async def _now_connected(self) -> None:
        self.stats["pubsub_connects"] += 1
        self._connected.set()
        async with self._connects_changed:
            self._connects_changed.notify_all()

    async def health(self) -> None:
        """Return when Redis answers a PING and the pub/sub connection is up.

        Raises :class:`~wsskit.exceptions.BackplaneError` otherwise.
        """
        await self._command("PING")
        if not self._connected.is_set():
            raise BackplaneError("the Redis pub/sub connection is down (reconnecting)")

    # -- commands -------------------------------------------------------------------------

    def _require_client(self) -> Redis:
        client = self._client
        if not self._started or client is None:
            raise BackplaneError("the backplane is not started (or closed)")
        return client

    async def _command(self, *args: Any) -> Any:
        client = self._require_client()
        try:
            return await cast(Any, client).execute_command(*args)
        except (RedisError, OSError) as exc:
            raise BackplaneError(f"Redis failed: {exc}") from exc

    async def _run(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        client = self._require_client()
        try:
            try:
                return await cast(Any, client).execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Not loaded yet (or Redis restarted): EVAL caches it for next time.
                return await cast(Any, client).execute_command("EVAL", script.source, len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            raise BackplaneError(f"Redis failed: {exc}") from exc

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Publication:
        """Publish atomically (see the module); raise ValueError for data JSON cannot carry."""
        self._require_client()
        text = _dumps(data)
        keys = [self._key(channel, "m"), self._key(channel, "s")]
        if idempotency_key is not None:
            keys.append(self._key(channel, f"i:{idempotency_key}"))
        reply = await self._run(
            _PUBLISH_SCRIPT,
            keys,
            [
                self._pubsub_name(channel),
                text,
                new_epoch(),
                self._now(),
                retention.size,
                _ms(retention.ttl),
                round(retention.idempotency_window * 1000),
            ],
        )
        offset, epoch = int(reply[1]), _text(reply[2])
        if int(reply[0]) == 0:
            return Publication(offset, epoch, json.loads(reply[3]))
        return Publication(offset, epoch, data)

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        reply = await self._run(
            _HISTORY_SCRIPT,
            [self._key(channel, "m"), self._key(channel, "s")],
            [
                new_epoch(),
                self._now(),
                _ms(self.empty_ttl),
                "" if since is None else since.offset,
                "" if since is None else since.epoch,
                "" if limit is None else limit,
            ],
        )
        epoch = _text(reply[0])
        position = StreamPosition(int(reply[1]), epoch)
        publications = [
            Publication(int(reply[i]), epoch, json.loads(reply[i + 1])) for i in range(3, len(reply), 2)
        ]
        return HistoryResult(publications, position, bool(int(reply[2])))

    # -- presence -------------------------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        return [self._key(channel, "p"), self._key(channel, "px")]

    async def presence_add(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        message = json.dumps({"j": [info.client, info.user]}) if announce else ""
        await self._run(
            _PRESENCE_ADD_SCRIPT,
            self._presence_keys(channel),
            [
                self._now(),
                _ms(self.presence_ttl),
                "1" if announce else "0",
                self._pubsub_name(channel),
                message,
                info.client,
                json.dumps({"user": info.user}),
            ],
        )
        self._present.setdefault(channel, {})[info.client] = info

    async def presence_remove(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        clients = self._present.get(channel)
        if clients is not None:
            clients.pop(info.client, None)
            if not clients:
                del self._present[channel]
        message = json.dumps({"l": [info.client, info.user]}) if announce else ""
        await self._run(
            _PRESENCE_REMOVE_SCRIPT,
            self._presence_keys(channel),
            [info.client, "1" if announce else "0", self._pubsub_name(channel), message],
        )

    async def presence(self, channel: str) -> Sequence[ClientInfo]:
        reply = await self._run(_PRESENCE_LIST_SCRIPT, self._presence_keys(channel), [self._now()])
        found = []
        for i in range(0, len(reply), 2):
            user = json.loads(reply[i + 1]).get("user")
            found.append(ClientInfo(_text(reply[i]), user if isinstance(user, str) else None))
        return sorted(found, key=lambda info: info.client)

    async def _refresh_presence(self, *, restore: bool) -> None:
        # restore (after a reconnection, maybe to a restarted Redis) adds the
        # entries again; otherwise only those still present are refreshed, so
        # an entry another node removed stays removed.
        for channel, clients in list(self._present.items()):
            if not clients:
                continue
            keys = self._presence_keys(channel)
            if restore:
                args: list[str | int] = [self._now(), _ms(self.presence_ttl), "0", "", ""]
                for info in clients.values():
                    args += [info.client, json.dumps({"user": info.user})]
                await self._run(_PRESENCE_ADD_SCRIPT, keys, args)
            else:
                await self._run(
                    _PRESENCE_REFRESH_SCRIPT, keys, [self._now(), _ms(self.presence_ttl), *clients]
                )

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self.presence_ttl / 3)  # a period, not a synchronisation
            try:
                await self._refresh_presence(restore=False)
            except BackplaneError as exc:
                logger.warning("%r: refreshing presence failed: %s", self, exc)

    # -- live delivery ----------------------------------------------------------------------

    async def subscribe(self, channel: str, callback: DeliveryCallback) -> None:
        """Subscribe ``callback``; returns once Redis confirmed the subscription.

        Raises :class:`~wsskit.exceptions.BackplaneError` when the pub/sub
        connection is down or Redis does not confirm within ``timeout``.
        """
        self._require_client()
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        added = callback not in state.callbacks
        state.callbacks[callback] = None
        try:
            if state.confirmed is None:
                futures = await self._send_subscribe([self._pubsub_name(channel)])
                state.confirmed = futures[0]
            await asyncio.wait_for(asyncio.shield(state.confirmed), self.timeout)
            if state.last is None and state.baseline is None:
                # Read after the confirmation: a publication after this
                # position is delivered live or caught up after a reconnection.
                position = (await self.history(channel, limit=0)).position
                if state.last is None and state.baseline is None:
                    state.baseline = (position.epoch, position.offset)
        except BaseException as exc:
            if added:
                await self.unsubscribe(channel, callback)
            if isinstance(exc, (BackplaneError, asyncio.CancelledError)):
                raise
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                raise BackplaneError("Redis did not confirm the subscription in time") from exc
            raise

    async def unsubscribe(self, channel: str, callback: DeliveryCallback) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        state.callbacks.pop(callback, None)
        if state.callbacks:
            return
        del self._channels[channel]
        conn = self._conn
        if conn is not None:
            try:
                async with self._send_lock:
                    await conn.send_command("UNSUBSCRIBE", self._pubsub_name(channel))
            except (RedisError, OSError) as exc:
                # The connection is going down: the reconnection will not resubscribe.
                logger.info("%r: UNSUBSCRIBE %r failed: %s", self, channel, exc)

    async def _send_subscribe(self, names: list[str]) -> list[asyncio.Future[None]]:
        # Send one SUBSCRIBE; return the futures its confirmations resolve.
        conn = self._conn
        if conn is None or (not self._connected.is_set() and self._held is None):
            raise BackplaneError("the Redis pub/sub connection is down (reconnecting)")
        return await self._send_subscribe_on(conn, names)

    async def _send_subscribe_on(
        self, conn: AbstractConnection, names: list[str]
    ) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        async with self._send_lock:
            for name in names:
                future: asyncio.Future[None] = loop.create_future()
                future.add_done_callback(_quiet)
                self._pending.setdefault(name, collections.deque()).append(future)
                futures.append(future)
            try:
                await conn.send_command("SUBSCRIBE", *names)
            except (RedisError, OSError) as exc:
                error = BackplaneError(f"Redis SUBSCRIBE failed: {exc}")
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
                raise error from exc
        return futures

    async def _open_pubsub(self) -> AbstractConnection:
        # A dedicated connection (never back to the pool), blocking reads.
        pool = self._pool
        if pool is None:
            raise BackplaneError("the backplane is closed")
        # RESP2, where a pub/sub message is a plain reply (redis-py 8 defaults
        # to RESP3, and its maintenance notifications need RESP3: off here).
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "protocol": 2}
        for name in ("maint_notifications_config", "maint_notifications_pool_handler"):
            kwargs.pop(name, None)
        conn: AbstractConnection = pool.connection_class(**kwargs)
        try:
            await cast(Any, conn).connect()
            self._conn = conn
            probe = (await self._send_subscribe_on(conn, [self._probe_channel]))[0]
            while not probe.done():
                await self._read_one(conn)
            probe.result()
        except (RedisError, OSError) as exc:
            await self._drop_pubsub()
            raise BackplaneError(f"the Redis pub/sub connection failed: {exc}") from exc
        except BaseException:
            await self._drop_pubsub()
            raise
        return conn

    async def _drop_pubsub(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        self._held = None
        error = BackplaneError("the Redis pub/sub connection dropped")
        for futures in self._pending.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        self._pending.clear()
        for state in self._channels.values():
            state.confirmed = None
        if self._probe is not None and not self._probe[1].done():
            self._probe[1].set_exception(error)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _pubsub_loop(self, conn: AbstractConnection | None) -> None:
        # Read deliveries; on a failure, reconnect with backoff and resubscribe.
        delay = self.reconnect_delay
        while True:
            if conn is not None:
                try:
                    while True:
                        await self._read_one(conn)
                except (RedisError, OSError) as exc:
                    logger.warning("%r: the Redis pub/sub connection dropped: %s", self, exc)
                await self._drop_pubsub()
                conn = None
            # Full jitter, growing exponentially: a timer, not a synchronisation.
            await asyncio.sleep(_jitter.uniform(0, delay))
            delay = min(delay * 2, self.reconnect_max_delay)
            try:
                conn = await self._reconnect()
            except BackplaneError as exc:
                logger.warning(
                    "%r: reconnecting to Redis failed (%s); next attempt within %.1f s", self, exc, delay
                )
                continue
            delay = self.reconnect_delay

    async def _reconnect(self) -> AbstractConnection:
        # Resubscribe every channel, then catch each up from the history before
        # delivering what came live meanwhile.
        conn = await self._open_pubsub()
        pool = self._pool
        if pool is not None:
            # Connections idle in the pool may be dead ones from before the
            # drop: the catch-up and the commands after it use fresh ones.
            await pool.disconnect(inuse_connections=False)
        self._held = []
        try:
            channels = list(self._channels)
            if channels:
                futures = await self._send_subscribe_on(conn, [self._pubsub_name(c) for c in channels])
                for channel, future in zip(channels, futures, strict=True):
                    state = self._channels.get(channel)
                    if state is not None:
                        state.confirmed = future
                while not all(future.done() for future in futures):
                    await self._read_one(conn)
                for future in futures:
                    future.result()
            for channel in channels:
                await self._catch_up(channel)
            held, self._held = self._held, None
            for name, payload in held:
                self._dispatch(name, payload)
            await self._now_connected()
        except (RedisError, OSError) as exc:
            await self._drop_pubsub()
            raise BackplaneError(f"resubscribing to Redis failed: {exc}") from exc
        except BaseException:
            await self._drop_pubsub()
            raise
        try:
            await self._refresh_presence(restore=True)
        except BackplaneError as exc:
            logger.warning("%r: restoring presence failed: %s", self, exc)
        return conn

    async def _catch_up(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        since = state.last if state.last is not None else state.baseline
        if since is None:
            # Nothing to prove continuity from: say so rather than guess.
            self._deliver(channel, state, Reset())
            return
        epoch, offset = since
        result = await self.history(channel, since=StreamPosition(offset, epoch))
        if not result.recovered:
            # Lost (Redis restarted without its data, or the history moved
            # past what was missed): tell the callbacks, then go on from here.
            logger.warning(
                "%r: publications in %r may have been missed while disconnected (%s)",
                self,
                channel,
                "a new epoch" if result.position.epoch != epoch else "no longer in the history",
            )
            state.last = None
            state.baseline = (result.position.epoch, result.position.offset)
            self._deliver(channel, state, Reset(result.position))
            return
        for publication in result.publications:
            self._deliver(channel, state, publication)

    async def _read_one(self, conn: AbstractConnection) -> None:
        response = await conn.read_response()
        if not isinstance(response, list) or len(response) < 3:
            return
        kind = _text(response[0])
        name = _text(response[1])
        if kind == "message":
            payload = response[2]
            if name == self._probe_channel:
                self._probe_arrived(_text(payload))
            elif self._held is not None:
                self._held.append((name, payload))
            else:
                self._dispatch(name, payload)
        elif kind == "subscribe":
            pending = self._pending.get(name)
            if pending:
                future = pending.popleft()
                if not pending:
                    del self._pending[name]
                if not future.done():
                    future.set_result(None)

    def _dispatch(self, name: str, payload: bytes) -> None:
        channel = name[len(self.prefix) + 3 :]
        state = self._channels.get(channel)
        if state is None:
            return
        try:
            message = json.loads(payload)
            delivery: Delivery
            if "o" in message:
                delivery = Publication(int(message["o"]), str(message["e"]), message["d"])
            elif "j" in message:
                delivery = Join(ClientInfo(*message["j"]))
            else:
                delivery = Leave(ClientInfo(*message["l"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("%r: ignoring a malformed message on %r", self, name)
            return
        self._deliver(channel, state, delivery)

    def _deliver(self, channel: str, state: _Channel, delivery: Delivery) -> None:
        if isinstance(delivery, Publication):
            last = state.last
            if last is not None and last[0] == delivery.epoch and delivery.offset <= last[1]:
                return  # already delivered (by the catch-up after a reconnection)
            state.last = (delivery.epoch, delivery.offset)
        for callback in list(state.callbacks):
            try:
                callback(channel, delivery)
            except Exception:
                logger.exception("a delivery callback for %r failed", channel)

    # -- the liveness probe -------------------------------------------------------------

    def _probe_arrived(self, nonce: str) -> None:
        probe = self._probe
        if probe is not None and probe[0] == nonce and not probe[1].done():
            probe[1].set_result(None)

    async def probe(self) -> bool:
        """Publish a probe on this node's private channel; True when it came back in time.

        When it does not, the pub/sub connection is torn down (and reconnects).
        """
        conn = self._conn
        if conn is None or not self._connected.is_set():
            return False
        nonce = secrets.token_hex(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_quiet)
        self._probe = (nonce, future)
        try:
            receivers = await self._command("PUBLISH", self._probe_channel, nonce)
            if int(receivers) > 0:
                await asyncio.wait_for(asyncio.shield(future), self.probe_timeout)
                return True
        except (BackplaneError, TimeoutError, asyncio.TimeoutError) as exc:
            logger.warning("%r: the pub/sub probe failed (%s): reconnecting", self, str(exc) or "timeout")
        else:
            logger.warning("%r: the pub/sub connection is not subscribed to its probe: reconnecting", self)
        finally:
            self._probe = None
        self.stats["probe_failures"] += 1
        if self._conn is conn:
            # The reader task sees the connection fail and reconnects.
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
        return False

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)  # a period, not a synchronisation
            await self.probe()
