"""The ``nats://`` backplane: core NATS delivers, JetStream keeps the history.

Needs the ``nats`` extra (``pip install 'wsskit[nats]'``) and a NATS server
(2.9 or later) with JetStream enabled. ``tls://`` URLs connect over TLS.

Layout on the broker (``<p>`` is the ``prefix``, ``wsskit`` by default):

- **History**: one stream per history class, named ``<p>_h_s<size>_t<ttl ms>_w<window ms>``
  (a namespace's :class:`~wsskit.channels.backplanes.base.Retention`), with the
  subjects ``<p>.h.<class>.<encoded channel>``, ``max_msgs_per_subject`` = the
  history size (1 for a size of 0: the last publication must stay to count on),
  ``max_age`` = the ttl and ``duplicate_window`` = the idempotency window.
  Each message carries its channel offset and epoch in headers
  (``Wsskit-Offset``, ``Wsskit-Epoch``) and its data as JSON.
- **Live delivery**: every history stream *republishes* each stored message to
  the core subject ``<p>.live.<encoded channel>``. The server republishes in
  stream order, after storing, so subscribers see publications in offset order
  and never one that was refused. Joins and leaves go to the same subject over
  core NATS. Each node holds one core subscription per channel.
- **Channel metadata**: a KV bucket ``<p>_meta``, one key per channel holding
  ``{"epoch", "stream", "used"}``: the epoch the channel's *next* life starts
  with, the history class it lives in, and whether a publication already
  started a life with that epoch.
- **Presence**: a stream ``<p>_presence`` (``max_msgs_per_subject`` 1,
  ``max_age`` = ``presence_ttl``) with one subject per client and channel;
  each node re-stores its own clients every ``presence_ttl / 3`` seconds, so
  the clients of a node that crashed disappear within ``presence_ttl``.

Offsets: a publish reads the last message of the channel's subject (its offset
*n*, epoch and stream sequence) and stores offset *n* + 1 with
``Nats-Expected-Last-Subject-Sequence`` set to that sequence. JetStream refuses
the message when another publisher got there first; the publisher then reads
again and retries. The stream is thus the single point of serialization, with
no counter that could drift from it: a per-channel counter starts at 1 and
never has a gap, whichever node publishes.

Epochs: while a channel has a retained message, its epoch is the one in that
message. When it has none (never published, every message aged out, the stream
deleted, or JetStream restarted without its data), the epoch is the one in the
channel's metadata; a publication that starts a new life marks that epoch
*used*, and the next reader that finds the subject empty again replaces a used
epoch with a new random one. A lost history thus always comes back with a new
epoch, and a KV bucket lost with the streams makes new epochs too.

Idempotency: the message id (``Nats-Msg-Id``) is a hash of the channel and the
key; JetStream's de-duplication answers a repeated id with the original
message's stream sequence, from which the original offset and epoch are read.

Resubscription: nats-py resubscribes by itself after a reconnect; the node then
reads what each subscribed channel missed from JetStream (after the last
publication it delivered, or the position read when it subscribed) and
delivers it before the live messages that follow, so subscribers see no gap
when the history still holds it. When it does not (the server restarted
without its JetStream data, a stream was recreated, the history moved on), or
when what was missed cannot be read, the node delivers a
:class:`~wsskit.channels.backplanes.base.Reset` instead, before anything of the
new stream (the hub answers it with 4002): never a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
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

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js import api as _js_api
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("the nats:// backplane needs nats-py: pip install 'wsskit[nats]'") from _exc

__all__ = ["NatsBackplane", "encode_token", "decode_token"]

logger = logging.getLogger("wsskit.channels")

_OFFSET = "Wsskit-Offset"
_EPOCH = "Wsskit-Epoch"
_KIND = "Wsskit-Kind"
_EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_MSG_ID = "Nats-Msg-Id"
# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
_WRONG_LAST_SEQUENCE = 10071
_STREAM_NAME_IN_USE = 10058
# How many times a publish re-reads and retries when other publishers win.
_PUBLISH_ATTEMPTS = 64

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TOKEN = re.compile(r"c(?:[A-Za-z0-9_-]|=[0-9A-F]{2})*")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}")

# What the nats-py calls raise when the broker fails or is out of reach.
_NATS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)
_REFRESH_ERRORS: tuple[type[BaseException], ...] = (BackplaneError, *_NATS_ERRORS)


def encode_token(name: str) -> str:
    """Encode ``name`` as one NATS subject token that is also a valid KV key.

    ASCII letters, digits, ``-`` and ``_`` stay; every other UTF-8 byte
    becomes ``=XX`` (upper-case hex); a leading ``c`` keeps even the empty
    name a token. Reversible by :func:`decode_token`; no two names share a
    token, and no token holds ``.``, ``*``, ``>`` or whitespace.
    """
    out = ["c"]
    for byte in name.encode("utf-8"):
        out.append(chr(byte) if byte in _SAFE else f"={byte:02X}")
    return "".join(out)


def decode_token(token: str) -> str:
    """The name :func:`encode_token` made ``token`` from; :class:`ValueError` if it made none."""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"not an encoded name: {token!r}")
    raw = bytearray()
    i = 1
    while i < len(token):
        if token[i] == "=":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(token[i]))
            i += 1
    return raw.decode("utf-8")


def _new_epoch() -> str:
    return secrets.token_urlsafe(9)


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _class_of(retention: Retention) -> str:
    # The history class: a stream per distinct (size, ttl, window).
    window = _millis(min(retention.idempotency_window, retention.ttl)) if retention.idempotency_window else 0
    return f"s{retention.size}_t{_millis(retention.ttl)}_w{window}"


_CLASS = re.compile(r"s(\d+)_t(\d+)_w(\d+)")


def _class_size(cls: str) -> int:
    match = _CLASS.fullmatch(cls)
    if match is None:
        raise BackplaneError(f"unknown history class {cls!r} in the channel metadata")
    return int(match.group(1))


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class _Stored:
    # One history message as read back: where it is and what it says.
    seq: int
    offset: int
    epoch: str
    data: Any

    def publication(self) -> Publication:
        return Publication(self.offset, self.epoch, self.data)


def _stored(seq: int | None, headers: dict[str, str] | None, payload: bytes | None) -> _Stored:
    if seq is None or not headers or _OFFSET not in headers or _EPOCH not in headers:
        raise BackplaneError("a history message without its wsskit headers")
    try:
        return _Stored(seq, int(headers[_OFFSET]), headers[_EPOCH], json.loads(payload or b"null"))
    except ValueError as exc:
        raise BackplaneError("a malformed history message") from exc


@dataclass(frozen=True, slots=True)
class _Meta:
    epoch: str
    stream: str | None = None
    used: bool = False

    def encode(self) -> bytes:
        return _dumps({"epoch": self.epoch, "stream": self.stream, "used": self.used})

    @classmethod
    def decode(cls, value: bytes | None) -> _Meta:
        try:
            raw = json.loads(value or b"")
            epoch, stream, used = raw["epoch"], raw["stream"], raw["used"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackplaneError("malformed channel metadata") from exc
        if (
            not isinstance(epoch, str)
            or not (stream is None or isinstance(stream, str))
            or not isinstance(used, bool)
        ):
            raise BackplaneError("malformed channel metadata")
        return cls(epoch, stream, used)


@dataclass(eq=False)
class _Local:
    # One channel's subscription on this node.
    callbacks: dict[DeliveryCallback, None] = field(default_factory=dict)
    subscription: Any = None  # nats.aio.subscription.Subscription
    # The last publication delivered: (epoch, offset).
    last: tuple[str, int] | None = None
    # The stream's position when the subscription took effect: (offset, epoch).
    baseline: tuple[int, str] | None = None
    # Live deliveries held while what a reconnect missed is read.
    held: list[Delivery] | None = None


class NatsBackplane(Backplane):
    """A node's connection to NATS with JetStream (see the module).

    ``url``: ``nats://host:port`` or ``tls://host:port`` (user and password in
    the URL are passed on). ``tls``: the SSL context for TLS (the default
    verifies the server). ``prefix`` names the subjects, streams and buckets,
    so several deployments can share a server. ``presence_ttl``: how long a
    crashed node's clients stay in presence. ``reconnect_wait``: seconds
    between reconnection attempts. ``timeout``: seconds a request to the
    broker may take.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        tls: ssl.SSLContext | None = None,
        prefix: str = "wsskit",
        presence_ttl: float = 30.0,
        reconnect_wait: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("prefix must be 1 to 32 ASCII letters, digits, '-' or '_'")
        if not presence_ttl > 0:
            raise ValueError("presence_ttl must be positive")
        self.url = url
        self.tls = tls
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.reconnect_wait = reconnect_wait
        self.timeout = timeout
        self._nc: Any = None  # nats.aio.client.Client
        self._js: Any = None  # nats.js.JetStreamContext
        self._kv: Any = None  # nats.js.kv.KeyValue for the metadata
        self._streams: set[str] = set()  # history and presence streams known to exist
        self._channels: dict[str, _Local] = {}
        self._publish_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._subscribe_lock = asyncio.Lock()
        self._present: dict[tuple[str, str], ClientInfo] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()

    def __repr__(self) -> str:
        return f"<NatsBackplane {self.url} channels={len(self._channels)}>"

    # -- names ------------------------------------------------------------------------

    def _history_stream(self, cls: str) -> str:
        return f"{self.prefix}_h_{cls}"

    def _history_subject(self, cls: str, channel: str) -> str:
        return f"{self.prefix}.h.{cls}.{encode_token(channel)}"

    def _live_subject(self, channel: str) -> str:
        return f"{self.prefix}.live.{encode_token(channel)}"

    @property
    def _presence_stream(self) -> str:
        return f"{self.prefix}_presence"

    def _presence_subject(self, channel: str, client: str) -> str:
        return f"{self.prefix}.presence.{encode_token(channel)}.{encode_token(client)}"

    @property
    def _meta_bucket(self) -> str:
        return f"{self.prefix}_meta"

    # -- connection ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._nc is not None:
            return
        try:
            # nats-py retries a first connection forever when reconnection is:
            # give it ``timeout`` seconds.
            connecting = nats.connect(
                servers=[self.url],
                tls=self.tls,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=self.reconnect_wait,
                connect_timeout=max(1, round(self.timeout)),
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
            nc = await asyncio.wait_for(connecting, self.timeout)
        except _NATS_ERRORS as exc:
            reason = str(exc) or (
                "timed out" if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) else repr(exc)
            )
            raise BackplaneError(f"cannot connect to NATS at {self.url}: {reason}") from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self.timeout)
        self._connected.set()
        self._refresher = asyncio.create_task(self._refresh_presence())

    async def close(self) -> None:
        nc, self._nc, self._js, self._kv = self._nc, None, None, None
        if nc is None:
            return
        self._connected.clear()
        tasks = [*self._tasks, *([self._refresher] if self._refresher is not None else [])]
        self._refresher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._channels.clear()
        self._present.clear()
        self._streams.clear()
        with contextlib.suppress(*_NATS_ERRORS):
            await nc.close()

    @property
    def ready(self) -> bool:
        """True while started and connected to NATS."""
        nc = self._nc
        return nc is not None and bool(nc.is_connected) and self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once the node is connected (at once unless it is reconnecting).

        Raises :class:`TimeoutError` after ``timeout`` seconds and
        :class:`~wsskit.exceptions.BackplaneError` when the node is not started.
        """
        if self._nc is None:
            raise BackplaneError("the backplane is not started (or closed)")
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_disconnected(self, timeout: float | None = None) -> None:
        """Return once the node has lost its connection (for tests and drills).

        Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        await asyncio.wait_for(self._disconnected.wait(), timeout)

    async def _on_error(self, exc: Exception) -> None:
        # Before the first connection, start() reports the failure once itself.
        level = logging.WARNING if self._nc is not None else logging.DEBUG
        logger.log(level, "NATS (%s): %s", self.url, exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        self._disconnected.set()
        if self._nc is not None:
            logger.warning("NATS (%s): disconnected", self.url)

    async def _on_reconnected(self) -> None:
        # The server may have restarted without its data: forget what exists.
        self._streams.clear()
        self._kv = None
        self._disconnected.clear()
        logger.info("NATS (%s): reconnected", self.url)
        for channel, local in self._channels.items():
            if local.held is None:
                local.held = []
                self._spawn(self._catch_up(channel, local))
        self._connected.set()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _client(self) -> tuple[Any, Any]:
        nc, js = self._nc, self._js
        if nc is None or js is None:
            raise BackplaneError("the backplane is not started (or closed)")
        if not nc.is_connected:
            raise BackplaneError(f"not connected to NATS at {self.url}")
        return nc, js

    @contextlib.asynccontextmanager
    async def _failures(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except BackplaneError:
            raise
        except _NATS_ERRORS as exc:
            raise BackplaneError(f"NATS: {what} failed: {exc!r}") from exc

    async def health(self) -> None:
        nc, js = self._client()
        async with self._failures("the health check"):
            await nc.flush(timeout=self.timeout)
            await js.account_info()

    # -- streams and metadata ------------------------------------------------------------

    async def _add_stream(self, config: Any) -> None:
        _, js = self._client()
        try:
            await js.add_stream(config)
        except nats.js.errors.APIError as exc:
            # Made by another node with other settings: use it as it is.
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
        self._streams.add(config.name)

    async def _ensure_history_stream(self, cls: str) -> str:
        name = self._history_stream(cls)
        if name in self._streams:
            return name
        match = _CLASS.fullmatch(cls)
        assert match is not None
        size, ttl_ms, window_ms = (int(group) for group in match.groups())
        source = f"{self.prefix}.h.{cls}.*"
        await self._add_stream(
            _js_api.StreamConfig(
                name=name,
                subjects=[source],
                storage=_js_api.StorageType.FILE,
                max_msgs_per_subject=max(size, 1),
                max_age=ttl_ms / 1000,
                duplicate_window=window_ms / 1000,
                republish=_js_api.RePublish(src=source, dest=f"{self.prefix}.live.{{{{wildcard(1)}}}}"),
                allow_direct=True,
            )
        )
        return name

    async def _ensure_presence_stream(self) -> str:
        name = self._presence_stream
        if name not in self._streams:
            await self._add_stream(
                _js_api.StreamConfig(
                    name=name,
                    subjects=[f"{self.prefix}.presence.*.*"],
                    storage=_js_api.StorageType.FILE,
                    max_msgs_per_subject=1,
                    max_age=self.presence_ttl,
                )
            )
        return name

    async def _meta_kv(self) -> Any:
        if self._kv is None:
            _, js = self._client()
            try:
                self._kv = await js.key_value(self._meta_bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(
                    _js_api.KeyValueConfig(
                        bucket=self._meta_bucket, history=1, storage=_js_api.StorageType.FILE
                    )
                )
        return self._kv

    async def _meta(self, channel: str) -> tuple[_Meta, int]:
        """The channel's metadata and its revision, made when missing."""
        key = encode_token(channel)
        while True:
            kv = await self._meta_kv()
            try:
                entry = await kv.get(key)
                return _Meta.decode(entry.value), int(entry.revision)
            except nats.js.errors.KeyNotFoundError:
                pass
            except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
                self._kv = None  # the bucket went away
                raise
            meta = _Meta(_new_epoch())
            try:
                return meta, int(await kv.create(key, meta.encode()))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another node made it first: read theirs

    async def _replace_meta(self, channel: str, meta: _Meta, revision: int) -> int | None:
        """Store ``meta`` if the metadata is still at ``revision``; its new revision, or None."""
        kv = await self._meta_kv()
        try:
            return int(await kv.update(encode_token(channel), meta.encode(), last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def _last(self, stream: str, subject: str) -> _Stored | None:
        """The last retained message on ``subject``, or None (none, or no stream)."""
        _, js = self._client()
        try:
            raw = await js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        return _stored(raw.seq, raw.headers, raw.data)

    async def _next(self, stream: str, subject: str, seq: int) -> _Stored | None:
        """The first message on ``subject`` at stream sequence ``seq`` or later, or None."""
        _, js = self._client()
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        return _stored(raw.seq, raw.headers, raw.data)

    # -- publishing ---------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Publication:
        self._client()
        payload = _dumps(data)
        msg_id = None
        if idempotency_key is not None and retention.idempotency_window > 0:
            digest = hashlib.sha256(f"{channel}\0{idempotency_key}".encode()).hexdigest()
            msg_id = f"wsskit-{digest}"
        cls = _class_of(retention)
        # One publish per channel at a time on this node: the others would only
        # lose the race for the next offset and retry.
        lock, users = self._publish_locks.get(channel) or (asyncio.Lock(), 0)
        self._publish_locks[channel] = (lock, users + 1)
        try:
            async with lock, self._failures(f"publishing to {channel!r}"):
                return await self._publish(channel, cls, payload, data, msg_id)
        finally:
            lock, users = self._publish_locks[channel]
            if users == 1:
                del self._publish_locks[channel]
            else:
                self._publish_locks[channel] = (lock, users - 1)

    async def _publish(
        self, channel: str, cls: str, payload: bytes, data: Any, msg_id: str | None
    ) -> Publication:
        subject = self._history_subject(cls, channel)
        for _ in range(_PUBLISH_ATTEMPTS):
            stream = await self._ensure_history_stream(cls)
            last = await self._last(stream, subject)
            if last is not None:
                offset, epoch, expected = last.offset + 1, last.epoch, last.seq
            else:
                # A new life for the channel: take the epoch from its metadata,
                # a fresh one if a life already used that one, and mark it used.
                meta, revision = await self._meta(channel)
                epoch = meta.epoch if not meta.used else _new_epoch()
                if await self._replace_meta(channel, _Meta(epoch, cls, True), revision) is None:
                    continue
                offset, expected = 1, 0
            headers = {
                _OFFSET: str(offset),
                _EPOCH: epoch,
                _KIND: "pub",
                _EXPECTED_SUBJECT_SEQ: str(expected),
            }
            if msg_id is not None:
                headers[_MSG_ID] = msg_id
            _, js = self._client()
            try:
                ack = await js.publish(subject, payload, stream=stream, headers=headers)
            except nats.js.errors.NoStreamResponseError:
                self._streams.discard(stream)  # deleted, or the server lost it
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    continue  # another publisher took this offset
                raise
            if ack.duplicate:
                original = await self._next(stream, subject, int(ack.seq))
                if original is None or original.seq != ack.seq:
                    raise BackplaneError(
                        f"the first publication with this idempotency key in {channel!r} is gone"
                    )
                return original.publication()
            return Publication(offset, epoch, data)
        raise BackplaneError(
            f"publishing to {channel!r} lost the race for an offset {_PUBLISH_ATTEMPTS} times"
        )

    # -- history ------------------------------------------------------------------------

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        self._client()
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        async with self._failures(f"reading the history of {channel!r}"):
            return await self._history(channel, since, limit)

    async def _history(self, channel: str, since: StreamPosition | None, limit: int | None) -> HistoryResult:
        meta, revision = await self._meta(channel)
        last: _Stored | None = None
        stream = subject = ""
        if meta.stream is not None:
            stream = self._history_stream(meta.stream)
            subject = self._history_subject(meta.stream, channel)
            last = await self._last(stream, subject)
        if last is None:
            # An empty stream: its epoch is the one the next life starts with,
            # a new one if the last life (now gone) used the stored one.
            while meta.used:
                fresh = _Meta(_new_epoch(), meta.stream, False)
                if await self._replace_meta(channel, fresh, revision) is not None:
                    meta = fresh
                    break
                meta, revision = await self._meta(channel)
            position = StreamPosition(0, meta.epoch)
            if since is None:
                return HistoryResult([], position, True)
            return HistoryResult([], position, since.epoch == position.epoch and since.offset == 0)
        assert meta.stream is not None
        position = StreamPosition(last.offset, last.epoch)
        size = _class_size(meta.stream)
        if since is not None and (since.epoch != position.epoch or since.offset > position.offset):
            return HistoryResult([], position, False)
        if since is None and limit == 0:
            return HistoryResult([], position, True)
        # Size 0 keeps only the last message, to count on: it is not history.
        first = None if size == 0 else await self._next(stream, subject, 0)
        if (first is None and size > 0) or (first is not None and first.offset > last.offset):
            return await self._history(channel, since, limit)  # aged out meanwhile: read again
        first_offset = last.offset + 1 if first is None else first.offset
        if since is None:
            start = first_offset if limit is None else max(first_offset, last.offset - limit + 1)
        else:
            if since.offset < last.offset and first_offset > since.offset + 1:
                return HistoryResult([], position, False)
            start = since.offset + 1
        end = last.offset if limit is None else min(last.offset, start + limit - 1)
        if first is None or end < start:
            return HistoryResult([], position, True)
        publications = await self._read(stream, subject, first, start, end)
        if publications is None:
            # Messages aged out while being read.
            if since is not None:
                return HistoryResult([], position, False)
            return await self._history(channel, since, limit)
        return HistoryResult(publications, position, True)

    async def _read(
        self, stream: str, subject: str, first: _Stored, start: int, end: int
    ) -> list[Publication] | None:
        """Publications ``start`` to ``end`` of ``subject``, or None if some are gone."""
        publications: list[Publication] = []
        # Each offset has its own stream sequence, so offset ``start`` is at
        # least (start - first.offset) sequences after the first message.
        seq = first.seq + (start - first.offset)
        if start == first.offset:
            publications.append(first.publication())
            seq = first.seq + 1
        while len(publications) < end - start + 1:
            message = await self._next(stream, subject, seq)
            if message is None:
                return None
            seq = message.seq + 1
            if message.offset < start:
                continue
            if message.offset != start + len(publications):
                return None
            publications.append(message.publication())
        return publications

    # -- live delivery ------------------------------------------------------------------

    async def subscribe(self, channel: str, callback: DeliveryCallback) -> None:
        nc, _ = self._client()
        async with self._subscribe_lock, self._failures(f"subscribing to {channel!r}"):
            local = self._channels.get(channel)
            if local is None:
                local = _Local()

                async def on_message(msg: Any) -> None:
                    self._on_live(channel, local, msg)

                local.subscription = await nc.subscribe(self._live_subject(channel), cb=on_message)
                try:
                    # In force once the server has answered a PING sent after the SUB.
                    await nc.flush(timeout=self.timeout)
                except BaseException:
                    with contextlib.suppress(*_NATS_ERRORS):
                        await local.subscription.unsubscribe()
                    raise
                self._channels[channel] = local
                # Where the stream stood when the subscription took effect: after a
                # reconnect the node reads what it missed from here, even when
                # nothing was delivered yet. Not for dropping repeats: deliveries
                # already queued may be older.
                try:
                    position = (await self._history(channel, None, 0)).position
                    local.baseline = (position.offset, position.epoch)
                except BackplaneError as exc:
                    logger.warning("NATS: cannot read the position of %r: %s", channel, exc)
            local.callbacks[callback] = None

    async def unsubscribe(self, channel: str, callback: DeliveryCallback) -> None:
        async with self._subscribe_lock:
            local = self._channels.get(channel)
            if local is None or local.callbacks.pop(callback, 0) is not None:
                return
            if local.callbacks:
                return
            del self._channels[channel]
            if self._nc is not None:
                async with self._failures(f"unsubscribing from {channel!r}"):
                    with contextlib.suppress(
                        nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError
                    ):
                        await local.subscription.unsubscribe()

    def _on_live(self, channel: str, local: _Local, msg: Any) -> None:
        headers: dict[str, str] = msg.headers or {}
        kind = headers.get(_KIND)
        delivery: Delivery
        try:
            if kind == "pub":
                offset, epoch = int(headers[_OFFSET]), headers[_EPOCH]
                delivery = Publication(offset, epoch, json.loads(msg.data or b"null"))
            elif kind in ("join", "leave"):
                raw = json.loads(msg.data)
                info = ClientInfo(str(raw["client"]), raw["user"] if isinstance(raw["user"], str) else None)
                delivery = Join(info) if kind == "join" else Leave(info)
            else:
                return
        except (KeyError, ValueError, TypeError):
            logger.warning("NATS: a malformed message on %r", msg.subject)
            return
        if local.held is not None:
            local.held.append(delivery)
            return
        self._deliver(channel, local, delivery)

    def _deliver(self, channel: str, local: _Local, delivery: Delivery) -> None:
        if isinstance(delivery, Publication):
            if (
                local.last is not None
                and local.last[0] == delivery.epoch
                and delivery.offset <= local.last[1]
            ):
                return  # already delivered while catching up
            local.last = (delivery.epoch, delivery.offset)
        for callback in list(local.callbacks):
            try:
                callback(channel, delivery)
            except Exception:
                logger.exception("a delivery callback for %r failed", channel)

    async def _catch_up(self, channel: str, local: _Local) -> None:
        # After a reconnect: deliver what the channel published while this node
        # was away, then what arrived live meanwhile (dropping what repeats).
        try:
            if local.last is not None:
                since: StreamPosition | None = StreamPosition(local.last[1], local.last[0])
            elif local.baseline is not None:
                since = StreamPosition(*local.baseline)
            else:
                since = None  # the position at subscription could not be read
            await self.wait_connected()
            missed: Sequence[Publication] = ()
            reset: Reset | None = None
            if since is None:
                reset = Reset()
            else:
                try:
                    result = await self.history(channel, since=since)
                except BackplaneError as exc:
                    # Continuity cannot be proved: say so rather than guess.
                    logger.warning("NATS: cannot read what %r missed: %s", channel, exc)
                    reset = Reset()
                else:
                    if result.recovered:
                        missed = result.publications
                    else:
                        logger.warning("NATS: %r may have lost publications while disconnected", channel)
                        reset = Reset(result.position)
            if reset is not None:
                local.last = None
                if reset.position is not None:
                    local.baseline = (reset.position.offset, reset.position.epoch)
                self._deliver(channel, local, reset)
            for publication in missed:
                self._deliver(channel, local, publication)
        finally:
            held, local.held = local.held or [], None
            for delivery in held:
                self._deliver(channel, local, delivery)

    # -- presence -------------------------------------------------------------------------

    async def presence_add(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        nc, _ = self._client()
        async with self._failures(f"adding presence in {channel!r}"):
            await self._store_presence(channel, info)
            self._present[(channel, info.client)] = info
            if announce:
                await self._announce(nc, channel, "join", info)

    async def _store_presence(self, channel: str, info: ClientInfo) -> None:
        stream = await self._ensure_presence_stream()
        _, js = self._client()
        payload = _dumps({"client": info.client, "user": info.user})
        try:
            await js.publish(self._presence_subject(channel, info.client), payload, stream=stream)
        except nats.js.errors.NoStreamResponseError:
            self._streams.discard(stream)
            await self._store_presence(channel, info)

    async def _announce(self, nc: Any, channel: str, kind: str, info: ClientInfo) -> None:
        payload = _dumps({"client": info.client, "user": info.user})
        await nc.publish(self._live_subject(channel), payload, headers={_KIND: kind})

    async def presence_remove(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        nc, _ = self._client()
        self._present.pop((channel, info.client), None)
        async with self._failures(f"removing presence in {channel!r}"):
            stream = await self._ensure_presence_stream()
            request = _dumps({"filter": self._presence_subject(channel, info.client)})
            reply = await nc.request(f"$JS.API.STREAM.PURGE.{stream}", request, timeout=self.timeout)
            answer = json.loads(reply.data)
            if "error" in answer:
                raise nats.js.errors.APIError.from_error(answer["error"])
            if announce and answer.get("purged", 0):
                await self._announce(nc, channel, "leave", info)

    async def presence(self, channel: str) -> Sequence[ClientInfo]:
        self._client()
        clients: dict[str, ClientInfo] = {}
        async with self._failures(f"reading the presence of {channel!r}"):
            stream = await self._ensure_presence_stream()
            subjects = f"{self.prefix}.presence.{encode_token(channel)}.*"
            _, js = self._client()
            seq = 0
            while True:
                try:
                    raw = await js.get_msg(stream, seq=seq, subject=subjects, next=True)
                except nats.js.errors.NotFoundError:
                    break
                seq = int(raw.seq) + 1
                try:
                    entry = json.loads(raw.data or b"")
                    user = entry["user"]
                    clients[str(entry["client"])] = ClientInfo(
                        str(entry["client"]), user if isinstance(user, str) else None
                    )
                except (ValueError, KeyError, TypeError):
                    logger.warning("NATS: a malformed presence entry in %r", channel)
        return sorted(clients.values(), key=lambda info: info.client)

    async def _refresh_presence(self) -> None:
        # Re-store this node's clients before they age out (a timer, not a wait).
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            for (channel, _), info in list(self._present.items()):
                try:
                    await self._store_presence(channel, info)
                except _REFRESH_ERRORS as exc:
                    logger.warning("NATS: refreshing presence in %r failed: %s", channel, exc)
                    break
