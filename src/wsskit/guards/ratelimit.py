"""Rate limits: connections per address, messages and bytes per connection, pings.

Everything here is a pure policy object: it reads the time from an injected
``clock`` (``time.monotonic`` by default, any ``() -> float`` in seconds in
tests) and never sleeps, blocks or does I/O. None of it is thread-safe; an
event loop calls it from one thread.

- :class:`TokenBucket` is the building block: ``rate`` tokens a second,
  ``burst`` at most, starting full.
- :class:`ConnectionRateLimiter` admits connections: a token bucket per
  client address (429 when empty) and caps on connections per address, on
  all connections and on handshakes in progress (503 when reached). Its
  memory stays bounded whatever addresses connect.
- :class:`MessageRateLimiter` watches one connection's incoming messages and
  says when to close it with 1008 (policy violation, RFC 6455 §7.4.1).
- :class:`PingFloodGuard` says which incoming Pings to answer.
- :func:`retry_after_header` formats a ``Retry-After`` value.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Final

from ..exceptions import Overloaded, RateLimited

__all__ = [
    "TokenBucket",
    "ConnectionRateLimiter",
    "Admission",
    "MessageRateLimiter",
    "MESSAGE_RATE_EXCEEDED",
    "BYTE_RATE_EXCEEDED",
    "PingFloodGuard",
    "address_key",
    "retry_after_header",
]

_Clock = Callable[[], float]

# Tokens are floats and elapsed times are differences of floats: 0.3 s - 0.1 s
# at 10 tokens a second refills 1.9999999999999998 tokens, not 2. Shortfalls
# below this are treated as none so that a client keeping exactly to the rate
# is never refused by rounding; a billionth of a token is no loophole.
_EPSILON: Final = 1e-9

MESSAGE_RATE_EXCEEDED: Final = "message rate exceeded"
"""The close reason :meth:`MessageRateLimiter.on_message` returns for too many messages."""

BYTE_RATE_EXCEEDED: Final = "byte rate exceeded"
"""The close reason :meth:`MessageRateLimiter.on_message` returns for too many bytes."""


def _positive(name: str, value: float) -> float:
    """Return ``value`` as a float; raise ValueError unless it is a finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number above zero, not {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    """Return ``value``; raise ValueError unless it is an int of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value!r}")
    return value


def _refill(tokens: float, updated: float, now: float, rate: float, burst: float) -> tuple[float, float]:
    """Return a bucket's tokens and update time at ``now``.

    A clock that steps backwards (an injected one may) refills nothing and
    keeps the later time, so no interval is ever counted twice.
    """
    if now <= updated:
        return tokens, updated
    return min(burst, tokens + (now - updated) * rate), now


class TokenBucket:
    """A token bucket: ``rate`` tokens a second accumulate up to ``burst``.

    The bucket starts full. Tokens may be fractional and so may requests
    for them. Over any interval of ``t`` seconds, at most
    ``burst + rate * t`` tokens are taken.

    Raises :class:`ValueError` when ``rate`` or ``burst`` is not a finite
    number above zero (:class:`TypeError` when not a number at all).
    """

    __slots__ = ("_burst", "_clock", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: float, *, clock: _Clock = time.monotonic) -> None:
        self._rate = _positive("rate", rate)
        self._burst = _positive("burst", burst)
        self._clock = clock
        self._tokens = self._burst
        self._updated = clock()

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds."""
        return self._burst

    @property
    def available(self) -> float:
        """The tokens in the bucket now."""
        self._tokens, self._updated = _refill(
            self._tokens, self._updated, self._clock(), self._rate, self._burst
        )
        # Taking within _EPSILON can leave a hair below zero.
        return max(0.0, self._tokens)

    def delay(self, tokens: float = 1.0) -> float:
        """Return the seconds until ``tokens`` are available, 0.0 if they are now.

        Takes nothing. Raises :class:`ValueError` when ``tokens`` is negative,
        not finite, or more than ``burst`` (they would never be available).
        """
        if not math.isfinite(tokens) or tokens < 0:
            raise ValueError(f"tokens must be a finite number of at least zero, not {tokens!r}")
        if tokens > self._burst:
            raise ValueError(f"cannot take {tokens!r} tokens from a bucket of {self._burst!r}")
        missing = tokens - self.available
        return 0.0 if missing <= _EPSILON else missing / self._rate

    def take(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available and return 0.0; else take none and return the wait.

        The wait is the seconds until ``tokens`` would be available, assuming
        nothing else takes from the bucket meanwhile. Raises
        :class:`ValueError` as :meth:`delay` does.
        """
        wait = self.delay(tokens)
        if wait == 0.0:
            self._tokens -= tokens
        return wait

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate!r}, burst={self._burst!r}, available={self.available!r})"


def address_key(ip: str, *, ipv6_prefix: int = 64) -> str:
    """Return the key a client address is counted under.

    An IPv4 address is its own key. An IPv6 address counts as its
    ``/ipv6_prefix`` network (``"2001:db8::/64"``): one host, or one home,
    is normally given a whole /64 (RFC 6177, RFC 7421), and can pick a fresh
    address in it for every connection, so counting single IPv6 addresses
    would limit nothing. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``,
    what a dual-stack socket reports) counts as the IPv4 address, and a zone
    identifier is ignored. A string that is no IP address at all (the empty
    peer name of a Unix socket) is its own key.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    # int() ignores the zone identifier; clearing the host bits gives the
    # network address, which IPv6Network insists on.
    host_bits = 128 - ipv6_prefix
    network = (int(address) >> host_bits) << host_bits
    return str(ipaddress.IPv6Network((network, ipv6_prefix)))


def _busy(message: str, retry_after: float) -> Overloaded:
    # RFC 9110 §15.6.4: 503 is "temporarily overloaded"; 429 (RFC 6585 §4) is
    # for a client that sent too many requests. Reaching a cap is the former.
    return Overloaded(message, retry_after=retry_after)


class _Client:
    """What a ConnectionRateLimiter remembers about one address key."""

    __slots__ = ("active", "seen", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.seen = now
        self.active = 0


_PENDING: Final = 0
_OPEN: Final = 1
_RELEASED: Final = 2


class Admission:
    """One admitted connection's hold on a :class:`ConnectionRateLimiter`.

    It starts *pending*: counted among the handshakes in progress. Call
    :meth:`handshake_complete` once the opening handshake succeeds, and
    :meth:`release` when the connection ends, however it ends; ``with``
    releases on exit. Both are idempotent, and releasing also ends the
    pending state.
    """

    __slots__ = ("_limiter", "_state", "ip", "key")

    def __init__(self, limiter: ConnectionRateLimiter, ip: str, key: str) -> None:
        self._limiter = limiter
        self._state = _PENDING
        self.ip = ip
        """The address given to :meth:`ConnectionRateLimiter.admit`."""
        self.key = key
        """The key it is counted under (see :func:`address_key`)."""

    @property
    def pending(self) -> bool:
        """True until the handshake completes or the admission is released."""
        return self._state == _PENDING

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran."""
        return self._state == _RELEASED

    def handshake_complete(self) -> None:
        """Stop counting this connection as a handshake in progress."""
        if self._state == _PENDING:
            self._state = _OPEN
            self._limiter._handshake_done()

    def release(self) -> None:
        """Give the connection's slots back; later calls do nothing."""
        if self._state == _RELEASED:
            return
        was_pending = self._state == _PENDING
        self._state = _RELEASED
        self._limiter._release(self.key, was_pending)

    def __enter__(self) -> Admission:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = ("pending", "open", "released")[self._state]
        return f"<Admission {self.key} {state}>"


class ConnectionRateLimiter:
    """Admit or refuse new connections by client address.

    Each address key (see :func:`address_key`: IPv6 counts by /64) has a
    token bucket of ``per_ip_rate`` connection attempts a second, up to
    ``per_ip_burst``. :meth:`admit` checks, in this order:

    1. the address's bucket: empty raises
       :class:`~wsskit.exceptions.RateLimited` with status 429 and
       ``retry_after`` the seconds until a token is back. Every attempt
       that passes this check uses a token, including those a cap then
       refuses, so a client that ignores ``Retry-After`` soon gets 429;
    2. ``max_per_ip`` connections of that address at once,
    3. ``max_total`` connections at once,
    4. ``max_pending_handshakes`` connections admitted whose handshake has
       not completed (TLS and HTTP upgrade; slow handshakes are cheap for an
       attacker and hold server memory).

    A cap reached raises :class:`~wsskit.exceptions.Overloaded` (503) and
    ``retry_after`` set to ``busy_retry_after``. Connections are counted
    from :meth:`admit` until :meth:`Admission.release`, whether or not the
    handshake completed.

    Memory is bounded: an address without connections is forgotten once its
    bucket has had time to refill (``per_ip_burst / per_ip_rate`` seconds),
    which loses nothing, and at most ``max_tracked`` addresses are
    remembered; past that the least recently seen address without
    connections is forgotten early (it gets a full bucket back: leniency for
    it, never unbounded growth). Shared addresses (carrier-grade NAT, a
    company proxy) share limits, so per-address limits should be generous.

    Raises :class:`ValueError` when a rate, burst or retry time is not a
    finite number above zero, ``per_ip_burst`` is below 1, a cap is below
    1, ``max_tracked`` is below ``max_total``, or ``ipv6_prefix`` is not
    from 0 to 128.
    """

    def __init__(
        self,
        per_ip_rate: float,
        per_ip_burst: float,
        *,
        max_per_ip: int = 64,
        max_total: int = 10_000,
        max_pending_handshakes: int = 1_000,
        busy_retry_after: float = 5.0,
        max_tracked: int = 100_000,
        ipv6_prefix: int = 64,
        clock: _Clock = time.monotonic,
    ) -> None:
        self._rate = _positive("per_ip_rate", per_ip_rate)
        self._burst = _positive("per_ip_burst", per_ip_burst)
        if self._burst < 1:
            raise ValueError(f"per_ip_burst must be at least 1 to admit anything, not {per_ip_burst!r}")
        self._max_per_ip = _count("max_per_ip", max_per_ip)
        self._max_total = _count("max_total", max_total)
        self._max_pending = _count("max_pending_handshakes", max_pending_handshakes)
        self._busy_retry_after = _positive("busy_retry_after", busy_retry_after)
        self._max_tracked = _count("max_tracked", max_tracked)
        # Every address with a connection is tracked, so tracking fewer
        # addresses than connections would refuse connections under the cap.
        if self._max_tracked < self._max_total:
            raise ValueError(f"max_tracked ({max_tracked}) must be at least max_total ({max_total})")
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int) or not 0 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be an int from 0 to 128, not {ipv6_prefix!r}")
        self._ipv6_prefix = ipv6_prefix
        self._clock = clock
        # Untouched this long, any bucket is full again: forgetting it then
        # changes nothing, as a new address starts with a full bucket.
        self._refill_time = self._burst / self._rate
        self._clients: dict[str, _Client] = {}
        # The keys of clients without connections, least recently seen first.
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._total = 0
        self._pending = 0

    @property
    def active(self) -> int:
        """Connections admitted and not yet released, pending ones included."""
        return self._total

    @property
    def pending(self) -> int:
        """Connections admitted whose handshake has not completed."""
        return self._pending

    @property
    def tracked(self) -> int:
        """Address keys remembered now."""
        return len(self._clients)

    def connections(self, ip: str) -> int:
        """Return how many connections the key of ``ip`` holds."""
        client = self._clients.get(address_key(ip, ipv6_prefix=self._ipv6_prefix))
        return 0 if client is None else client.active

    def admit(self, ip: str) -> Admission:
        """Admit a connection from ``ip``, or raise.

        Returns an :class:`Admission` to release when the connection ends.
        Raises :class:`~wsskit.exceptions.RateLimited` with ``status`` 429
        when the address's rate is exceeded, and with ``status`` 503 when a
        cap is reached (see the class documentation for the order); its
        ``retry_after`` is in seconds.
        """
        now = self._clock()
        self._prune(now)
        key = address_key(ip, ipv6_prefix=self._ipv6_prefix)
        client = self._clients.get(key)
        if client is None:
            client = self._track(key, now)
        else:
            client.tokens, client.updated = _refill(
                client.tokens, client.updated, now, self._rate, self._burst
            )
            client.seen = now
            if client.active == 0:
                self._idle.move_to_end(key)

        missing = 1.0 - client.tokens
        if missing > _EPSILON:
            raise RateLimited("connection rate exceeded", retry_after=missing / self._rate)
        client.tokens -= 1.0

        if client.active >= self._max_per_ip:
            raise _busy("too many connections from this address", self._busy_retry_after)
        if self._total >= self._max_total:
            raise _busy("server at its connection limit", self._busy_retry_after)
        if self._pending >= self._max_pending:
            raise _busy("too many handshakes in progress", self._busy_retry_after)

        if client.active == 0:
            del self._idle[key]
        client.active += 1
        self._total += 1
        self._pending += 1
        return Admission(self, ip, key)

    def prune(self) -> int:
        """Forget addresses without connections whose buckets are full again.

        :meth:`admit` calls it; call it from a timer too to give memory back
        when no one connects. Returns how many addresses were forgotten.
        """
        return self._prune(self._clock())

    def _prune(self, now: float) -> int:
        dropped = 0
        # _idle is in order of last sight, so the first address seen too
        # recently ends the walk: the cost is the number forgotten, plus one.
        while self._idle:
            key = next(iter(self._idle))
            if now - self._clients[key].seen < self._refill_time:
                break
            del self._idle[key]
            del self._clients[key]
            dropped += 1
        return dropped

    def _track(self, key: str, now: float) -> _Client:
        """Start remembering ``key``, forgetting another address if at ``max_tracked``."""
        if len(self._clients) >= self._max_tracked:
            if not self._idle:
                # Every tracked address holds a connection: since max_tracked
                # >= max_total, all connection slots are taken.
                raise _busy("server at its connection limit", self._busy_retry_after)
            oldest, _ = self._idle.popitem(last=False)
            del self._clients[oldest]
        client = _Client(self._burst, now)
        self._clients[key] = client
        self._idle[key] = None
        return client

    def _handshake_done(self) -> None:
        self._pending -= 1

    def _release(self, key: str, was_pending: bool) -> None:
        if was_pending:
            self._pending -= 1
        self._total -= 1
        client = self._clients[key]
        client.active -= 1
        if client.active == 0:
            # Seen now: its bucket is measured from the moment it went idle.
            client.seen = self._clock()
            self._idle[key] = None


class MessageRateLimiter:
    """Limit one connection's incoming messages and bytes per second.

    Two token buckets: one of ``messages_per_second`` (up to
    ``message_burst``, by default one second's worth and at least 1) and one
    of ``bytes_per_second`` (up to ``byte_burst``, by default one second's
    worth). Either rate may be None to leave it unlimited.

    A message bigger than ``byte_burst`` can never pass, so ``byte_burst``
    should be at least the connection's largest allowed message
    (``Limits.max_message_size``).

    Raises :class:`ValueError` when a rate or burst is not a finite number
    above zero, ``message_burst`` is below 1, or a burst is given for a
    rate that is None.
    """

    __slots__ = ("_bytes", "_messages")

    def __init__(
        self,
        messages_per_second: float | None,
        bytes_per_second: float | None,
        *,
        message_burst: float | None = None,
        byte_burst: float | None = None,
        clock: _Clock = time.monotonic,
    ) -> None:
        self._messages: TokenBucket | None = None
        self._bytes: TokenBucket | None = None
        if messages_per_second is None:
            if message_burst is not None:
                raise ValueError("message_burst given without messages_per_second")
        else:
            rate = _positive("messages_per_second", messages_per_second)
            burst = max(1.0, rate) if message_burst is None else _positive("message_burst", message_burst)
            if burst < 1:
                raise ValueError(f"message_burst must be at least 1, not {message_burst!r}")
            self._messages = TokenBucket(rate, burst, clock=clock)
        if bytes_per_second is None:
            if byte_burst is not None:
                raise ValueError("byte_burst given without bytes_per_second")
        else:
            rate = _positive("bytes_per_second", bytes_per_second)
            burst = rate if byte_burst is None else _positive("byte_burst", byte_burst)
            self._bytes = TokenBucket(rate, burst, clock=clock)

    def on_message(self, size: int) -> str | None:
        """Count a received message of ``size`` bytes; return None, or why to close.

        The reason is :data:`MESSAGE_RATE_EXCEEDED` or
        :data:`BYTE_RATE_EXCEEDED`; the caller closes the connection with
        1008 and that reason. A refused message counts for nothing. Raises
        :class:`ValueError` when ``size`` is negative.
        """
        if size < 0:
            raise ValueError(f"size must be at least zero, not {size!r}")
        # Check both before taking from either, so a refusal takes nothing.
        if self._messages is not None and self._messages.delay() > 0.0:
            return MESSAGE_RATE_EXCEEDED
        if (
            self._bytes is not None
            and size > 0
            and (size > self._bytes.burst or self._bytes.take(size) > 0.0)
        ):
            return BYTE_RATE_EXCEEDED
        if self._messages is not None:
            self._messages.take()
        return None


class PingFloodGuard:
    """Decide which incoming Pings to answer: ``max_per_second``, up to ``burst`` at once.

    RFC 6455 §5.5.2 asks for a Pong in answer to a Ping, and §5.5.3 lets an
    endpoint that has not yet answered earlier Pings answer only the most
    recent one: Pings need not be answered one for one. Skipping those over
    the rate keeps a flood from costing the server a write each, while a
    peer that keeps to the rate (a keepalive) is always answered. ``burst``
    defaults to one second's worth, at least 1.

    Raises :class:`ValueError` when ``max_per_second`` or ``burst`` is not a
    finite number above zero, or ``burst`` is below 1.
    """

    __slots__ = ("_bucket",)

    def __init__(
        self, max_per_second: float, burst: float | None = None, *, clock: _Clock = time.monotonic
    ) -> None:
        rate = _positive("max_per_second", max_per_second)
        size = max(1.0, rate) if burst is None else _positive("burst", burst)
        if size < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._bucket = TokenBucket(rate, size, clock=clock)

    def allow(self) -> bool:
        """Count a received Ping; return whether to answer it with a Pong."""
        return self._bucket.take() == 0.0


def retry_after_header(seconds: float) -> str:
    """Return a ``Retry-After`` value for a wait of ``seconds``.

    RFC 9110 §10.2.3: delay-seconds is a whole number; the wait is rounded
    up, and is at least 1 so a client never retries at once. Raises
    :class:`ValueError` when ``seconds`` is NaN or infinite.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, not {seconds!r}")
    return str(max(1, math.ceil(seconds)))
