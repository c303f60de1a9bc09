"""Rate limits, driven by a fake clock: no test sleeps."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.exceptions import RateLimited
from wsskit.guards.ratelimit import (
    BYTE_RATE_EXCEEDED,
    MESSAGE_RATE_EXCEEDED,
    Admission,
    ConnectionRateLimiter,
    MessageRateLimiter,
    PingFloodGuard,
    TokenBucket,
    address_key,
    retry_after_header,
)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- TokenBucket -------------------------------------------------------------


def test_bucket_starts_full_and_empties() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, 3.0, clock=clock)
    assert (bucket.rate, bucket.burst, bucket.available) == (1.0, 3.0, 3.0)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.available == 0.0
    assert bucket.take() == 1.0


def test_refused_take_consumes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 1.0, clock=clock)
    assert bucket.take() == 0.0
    clock.advance(0.25)
    assert bucket.take() == 0.25
    assert bucket.take() == 0.25
    assert bucket.available == 0.5
    clock.advance(0.25)
    assert bucket.take() == 0.0


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 5.0, clock=clock)
    bucket.take(5.0)
    clock.advance(3600.0)
    assert bucket.available == 5.0
    assert bucket.take(5.0) == 0.0
    assert bucket.take() == 0.1


def test_fractional_tokens_and_rates() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.5, 1.5, clock=clock)
    assert bucket.take(0.75) == 0.0
    assert bucket.take(0.75) == 0.0
    assert bucket.take(0.5) == 1.0  # half a token at half a token a second
    clock.advance(0.5)
    assert bucket.available == 0.25
    assert bucket.take(0.25) == 0.0


def test_exact_boundary() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, 1.0, clock=clock)
    assert bucket.take() == 0.0
    clock.advance(0.1875)
    assert bucket.take() == 0.0625
    clock.advance(0.0625)
    assert bucket.take() == 0.0


def test_float_rounding_does_not_refuse_a_client_on_the_rate() -> None:
    # 0.3 - 0.1 is 0.19999999999999998: at 10 a second that refills a hair
    # less than 2 tokens, which must still be enough for 2.
    clock = FakeClock(0.1)
    bucket = TokenBucket(10.0, 2.0, clock=clock)
    assert bucket.take(2.0) == 0.0
    clock.now = 0.3
    assert bucket.take(2.0) == 0.0
    assert bucket.available == 0.0


def test_take_nothing_always_succeeds() -> None:
    bucket = TokenBucket(1.0, 1.0, clock=FakeClock())
    bucket.take()
    assert bucket.take(0.0) == 0.0
    assert bucket.delay(0.0) == 0.0


def test_delay_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, 2.0, clock=clock)
    assert bucket.delay(2.0) == 0.0
    assert bucket.available == 2.0
    bucket.take(2.0)
    assert bucket.delay(1.5) == 1.5


def test_clock_stepping_back_refills_nothing_twice() -> None:
    clock = FakeClock(10.0)
    bucket = TokenBucket(1.0, 5.0, clock=clock)
    bucket.take(5.0)
    clock.now = 5.0
    assert bucket.available == 0.0
    clock.now = 10.0
    assert bucket.available == 0.0
    clock.now = 11.0
    assert bucket.available == 1.0


@pytest.mark.parametrize("tokens", [-1.0, math.nan, math.inf, 2.5])
def test_bad_token_counts(tokens: float) -> None:
    bucket = TokenBucket(1.0, 2.0, clock=FakeClock())
    with pytest.raises(ValueError, match="tokens"):
        bucket.take(tokens)


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan])
def test_bad_rate_or_burst(value: float) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        TokenBucket(value, 1.0)
    with pytest.raises(ValueError, match="burst must be"):
        TokenBucket(1.0, value)


@pytest.mark.parametrize("value", ["1", True, None])
def test_rate_must_be_a_number(value: object) -> None:
    with pytest.raises(TypeError, match="rate must be a number"):
        TokenBucket(value, 1.0)  # type: ignore[arg-type]


def test_bucket_defaults_to_the_monotonic_clock() -> None:
    bucket = TokenBucket(1.0, 1.0)
    assert bucket.take() == 0.0
    assert 0.0 < bucket.take() <= 1.0


def test_bucket_repr() -> None:
    assert repr(TokenBucket(2, 4, clock=FakeClock())) == "TokenBucket(rate=2.0, burst=4.0, available=4.0)"


@given(
    rate=st.floats(0.1, 1000.0),
    burst=st.floats(1.0, 1000.0),
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 1.0)), max_size=60),
)
def test_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst, clock=clock)
    taken = 0.0
    for elapsed, fraction in steps:
        clock.advance(elapsed)
        amount = fraction * burst
        wait = bucket.take(amount)
        if wait == 0.0:
            taken += amount
        else:
            # The wait is exact: after it, the same request succeeds.
            assert wait > 0.0
            clock.advance(wait)
            assert bucket.take(amount) == 0.0
            taken += amount
        assert taken <= burst + rate * clock.now + 1e-6 * (1 + taken)
        assert 0.0 <= bucket.available <= burst


# --- address_key ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "prefix", "key"),
    [
        ("192.0.2.1", 64, "192.0.2.1"),
        ("2001:db8::1", 64, "2001:db8::/64"),
        ("2001:DB8:0:0:ffff:ffff:ffff:ffff", 64, "2001:db8::/64"),
        ("2001:db8:0:1::1", 64, "2001:db8:0:1::/64"),
        ("2001:db8:1234:5678::1", 48, "2001:db8:1234::/48"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("2001:db8::1", 0, "::/0"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        # Dual-stack sockets report IPv4 clients as IPv4-mapped addresses.
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        # A Unix socket's peer name is no address: it is its own key.
        ("", 64, ""),
        ("not an address", 64, "not an address"),
    ],
)
def test_address_key(ip: str, prefix: int, key: str) -> None:
    assert address_key(ip, ipv6_prefix=prefix) == key


# --- ConnectionRateLimiter -----------------------------------------------------


def _limiter(
    clock: FakeClock, rate: float = 100.0, burst: float = 100.0, **caps: int
) -> ConnectionRateLimiter:
    return ConnectionRateLimiter(rate, burst, clock=clock, **caps)


def test_admit_and_release() -> None:
    limiter = _limiter(FakeClock())
    admission = limiter.admit("192.0.2.1")
    assert isinstance(admission, Admission)
    assert (admission.ip, admission.key) == ("192.0.2.1", "192.0.2.1")
    assert (admission.pending, admission.released) == (True, False)
    assert (limiter.active, limiter.pending, limiter.connections("192.0.2.1")) == (1, 1, 1)
    admission.release()
    assert (admission.pending, admission.released) == (False, True)
    assert (limiter.active, limiter.pending, limiter.connections("192.0.2.1")) == (0, 0, 0)
    admission.release()  # idempotent
    assert (limiter.active, limiter.pending) == (0, 0)


def test_admission_as_context_manager() -> None:
    limiter = _limiter(FakeClock())
    with limiter.admit("192.0.2.1") as admission:
        admission.handshake_complete()
        assert (limiter.active, limiter.pending) == (1, 0)
    assert admission.released
    assert limiter.active == 0


def test_admission_states() -> None:
    limiter = _limiter(FakeClock())
    admission = limiter.admit("192.0.2.1")
    assert repr(admission) == "<Admission 192.0.2.1 pending>"
    admission.handshake_complete()
    admission.handshake_complete()  # idempotent
    assert repr(admission) == "<Admission 192.0.2.1 open>"
    assert not admission.pending and limiter.pending == 0
    admission.release()
    admission.handshake_complete()  # after release: nothing
    assert repr(admission) == "<Admission 192.0.2.1 released>"
    assert (limiter.active, limiter.pending) == (0, 0)


def test_per_ip_rate_gives_429_with_retry_after() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, rate=2.0, burst=2.0)
    limiter.admit("192.0.2.1").release()
    limiter.admit("192.0.2.1").release()
    with pytest.raises(RateLimited, match="connection rate exceeded") as info:
        limiter.admit("192.0.2.1")
    assert (info.value.status, info.value.retry_after) == (429, 0.5)
    # Another address has its own bucket.
    limiter.admit("192.0.2.2").release()
    clock.advance(0.25)
    with pytest.raises(RateLimited) as info:
        limiter.admit("192.0.2.1")
    assert info.value.retry_after == 0.25
    clock.advance(0.25)
    limiter.admit("192.0.2.1").release()


def test_caps_raise_overloaded() -> None:
    from wsskit.exceptions import Overloaded, RateLimited

    assert issubclass(Overloaded, RateLimited) and Overloaded().status == 503


def test_max_per_ip_gives_503() -> None:
    limiter = _limiter(FakeClock(), max_per_ip=2)
    first = limiter.admit("192.0.2.1")
    limiter.admit("192.0.2.1")
    with pytest.raises(RateLimited, match="too many connections from this address") as info:
        limiter.admit("192.0.2.1")
    assert (info.value.status, info.value.retry_after) == (503, 5.0)
    limiter.admit("192.0.2.2")
    first.release()
    limiter.admit("192.0.2.1")


def test_max_total_gives_503() -> None:
    limiter = ConnectionRateLimiter(100, 100, max_total=2, busy_retry_after=1.5, clock=FakeClock())
    first = limiter.admit("192.0.2.1")
    limiter.admit("192.0.2.2")
    with pytest.raises(RateLimited, match="server at its connection limit") as info:
        limiter.admit("192.0.2.3")
    assert (info.value.status, info.value.retry_after) == (503, 1.5)
    first.release()
    limiter.admit("192.0.2.3")


def test_max_pending_handshakes_gives_503() -> None:
    limiter = _limiter(FakeClock(), max_pending_handshakes=2)
    first = limiter.admit("192.0.2.1")
    second = limiter.admit("192.0.2.2")
    with pytest.raises(RateLimited, match="too many handshakes in progress") as info:
        limiter.admit("192.0.2.3")
    assert info.value.status == 503
    first.handshake_complete()
    third = limiter.admit("192.0.2.3")
    with pytest.raises(RateLimited, match="handshakes"):
        limiter.admit("192.0.2.4")
    # Releasing a connection still in its handshake frees a pending slot too.
    second.release()
    limiter.admit("192.0.2.4")
    assert (limiter.active, limiter.pending) == (3, 2)
    third.release()
    first.release()
    assert (limiter.active, limiter.pending) == (1, 1)


def test_refused_attempts_use_rate_tokens() -> None:
    limiter = _limiter(FakeClock(), rate=1.0, burst=3.0, max_per_ip=1)
    limiter.admit("192.0.2.1")
    with pytest.raises(RateLimited) as info:
        limiter.admit("192.0.2.1")
    assert info.value.status == 503
    with pytest.raises(RateLimited) as info:
        limiter.admit("192.0.2.1")
    assert info.value.status == 503
    with pytest.raises(RateLimited) as info:
        limiter.admit("192.0.2.1")
    assert info.value.status == 429


def test_ipv6_addresses_share_their_64() -> None:
    limiter = _limiter(FakeClock(), max_per_ip=2)
    limiter.admit("2001:db8::1")
    limiter.admit("2001:db8::ffff:2")
    assert limiter.connections("2001:db8::42") == 2
    with pytest.raises(RateLimited, match="from this address"):
        limiter.admit("2001:db8::dead:beef")
    admission = limiter.admit("2001:db8:0:1::1")
    assert admission.key == "2001:db8:0:1::/64"
    assert limiter.tracked == 2


def test_ipv6_prefix_is_configurable() -> None:
    limiter = ConnectionRateLimiter(100, 100, max_per_ip=1, ipv6_prefix=128, clock=FakeClock())
    limiter.admit("2001:db8::1")
    limiter.admit("2001:db8::2")
    with pytest.raises(RateLimited):
        limiter.admit("2001:db8::1")


def test_ipv4_mapped_counts_as_ipv4() -> None:
    limiter = _limiter(FakeClock(), max_per_ip=1)
    limiter.admit("192.0.2.1")
    with pytest.raises(RateLimited):
        limiter.admit("::ffff:192.0.2.1")


def test_idle_addresses_are_forgotten_once_their_bucket_is_full() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=10.0)
    limiter.admit("192.0.2.1").release()
    assert limiter.tracked == 1
    clock.advance(9.5)
    assert limiter.prune() == 0
    assert limiter.tracked == 1
    clock.advance(0.5)
    assert limiter.prune() == 1
    assert limiter.tracked == 0
    assert limiter.prune() == 0


def test_admit_prunes() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=2.0)
    limiter.admit("192.0.2.1").release()
    limiter.admit("192.0.2.2").release()
    clock.advance(2.0)
    limiter.admit("192.0.2.3").release()
    assert limiter.tracked == 1


def test_addresses_with_connections_are_never_forgotten() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=2.0)
    admission = limiter.admit("192.0.2.1")
    clock.advance(3600.0)
    assert limiter.prune() == 0
    assert limiter.tracked == 1
    admission.release()
    # Its bucket is measured from the release, so it stays a while more.
    clock.advance(1.0)
    assert limiter.prune() == 0
    clock.advance(1.0)
    assert limiter.prune() == 1


def test_prune_follows_last_sight() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, rate=1.0, burst=10.0)
    limiter.admit("192.0.2.1").release()
    clock.advance(1.0)
    limiter.admit("192.0.2.2").release()
    clock.advance(1.0)
    limiter.admit("192.0.2.1").release()  # seen again: now the most recent
    clock.advance(9.5)
    assert limiter.prune() == 1
    assert limiter.connections("192.0.2.1") == 0
    assert limiter.tracked == 1
    clock.advance(0.5)
    assert limiter.prune() == 1


def test_tracked_addresses_are_capped() -> None:
    clock = FakeClock()
    limiter = ConnectionRateLimiter(1.0, 2.0, max_total=3, max_tracked=3, clock=clock)
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"]:
        limiter.admit(ip).release()
    limiter.admit("192.0.2.1").release()  # drained: 0 tokens left
    with pytest.raises(RateLimited):
        limiter.admit("192.0.2.1")  # a refused attempt counts as a sighting
    limiter.admit("192.0.2.4").release()
    assert limiter.tracked == 3
    # 192.0.2.2 was least recently seen and is forgotten; 192.0.2.1 is not.
    with pytest.raises(RateLimited, match="rate"):
        limiter.admit("192.0.2.1")
    limiter.admit("192.0.2.5").release()
    limiter.admit("192.0.2.6").release()
    assert limiter.tracked == 3


def test_rotating_addresses_cannot_grow_memory() -> None:
    limiter = ConnectionRateLimiter(1.0, 5.0, max_total=11, max_tracked=50, clock=FakeClock())
    held = [limiter.admit(f"2001:db8:{i:x}::1") for i in range(10)]
    for i in range(2000):
        limiter.admit(f"10.{i >> 8 & 255}.{i & 255}.1").release()
        assert limiter.tracked <= 50
    # Addresses holding connections are kept throughout.
    assert all(limiter.connections(a.ip) == 1 for a in held)


def test_tracking_full_of_connected_addresses_means_server_full() -> None:
    limiter = ConnectionRateLimiter(1.0, 5.0, max_total=2, max_tracked=2, clock=FakeClock())
    limiter.admit("192.0.2.1")
    limiter.admit("192.0.2.2")
    with pytest.raises(RateLimited, match="server at its connection limit") as info:
        limiter.admit("192.0.2.3")
    assert info.value.status == 503


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"per_ip_rate": 0}, ValueError, "per_ip_rate"),
        ({"per_ip_burst": 0.5}, ValueError, "per_ip_burst must be at least 1"),
        ({"per_ip_burst": math.inf}, ValueError, "per_ip_burst"),
        ({"max_per_ip": 0}, ValueError, "max_per_ip"),
        ({"max_total": True}, TypeError, "max_total must be an int"),
        ({"max_pending_handshakes": 1.5}, TypeError, "max_pending_handshakes"),
        ({"busy_retry_after": 0}, ValueError, "busy_retry_after"),
        ({"max_total": 10, "max_tracked": 9}, ValueError, "max_tracked"),
        ({"ipv6_prefix": 129}, ValueError, "ipv6_prefix"),
        ({"ipv6_prefix": -1}, ValueError, "ipv6_prefix"),
        ({"ipv6_prefix": True}, ValueError, "ipv6_prefix"),
    ],
)
def test_connection_limiter_refuses_bad_configuration(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"per_ip_rate": 1.0, "per_ip_burst": 1.0, **kwargs}
    with pytest.raises(error, match=message):
        ConnectionRateLimiter(**arguments)  # type: ignore[arg-type]


def test_connection_limiter_defaults() -> None:
    limiter = ConnectionRateLimiter(10.0, 20.0)
    with limiter.admit("192.0.2.1"):
        assert limiter.active == 1


_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(0, 5)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("complete"), st.integers(0, 20)),
        st.tuples(st.just("advance"), st.integers(0, 4)),
    ),
    max_size=80,
)


@given(_ACTIONS)
def test_connection_limiter_invariants(actions: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    caps = {"max_per_ip": 2, "max_total": 5, "max_pending_handshakes": 3, "max_tracked": 5}
    limiter = ConnectionRateLimiter(1.0, 3.0, clock=clock, **caps)
    ips = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "2001:db8:1::1", "198.51.100.7"]
    held: list[Admission] = []
    for action, value in actions:
        if action == "admit":
            try:
                held.append(limiter.admit(ips[value]))
            except RateLimited as exc:
                assert exc.status in (429, 503)
                assert exc.retry_after > 0
        elif action == "release" and held:
            held.pop(value % len(held)).release()
        elif action == "complete" and held:
            held[value % len(held)].handshake_complete()
        elif action == "advance":
            clock.advance(value * 0.75)
        assert limiter.active == len(held) <= 5
        assert limiter.pending == sum(a.pending for a in held) <= 3
        assert limiter.tracked <= 5
        for admission in held:
            assert limiter.connections(admission.ip) == sum(a.key == admission.key for a in held) <= 2
    for admission in held:
        admission.release()
    assert (limiter.active, limiter.pending) == (0, 0)


# --- MessageRateLimiter --------------------------------------------------------


def test_message_rate() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(2.0, None, message_burst=2.0, clock=clock)
    assert [limiter.on_message(10) for _ in range(3)] == [None, None, MESSAGE_RATE_EXCEEDED]
    assert MESSAGE_RATE_EXCEEDED == "message rate exceeded"
    clock.advance(0.5)
    assert limiter.on_message(10) is None
    assert limiter.on_message(10) == MESSAGE_RATE_EXCEEDED


def test_byte_rate() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(None, 100.0, byte_burst=100.0, clock=clock)
    assert limiter.on_message(60) is None
    assert limiter.on_message(60) == BYTE_RATE_EXCEEDED
    assert BYTE_RATE_EXCEEDED == "byte rate exceeded"
    assert limiter.on_message(40) is None
    clock.advance(0.5)
    assert limiter.on_message(50) is None
    assert limiter.on_message(1) == BYTE_RATE_EXCEEDED


def test_empty_messages_count_as_messages_but_not_bytes() -> None:
    limiter = MessageRateLimiter(2.0, 10.0, message_burst=2.0, clock=FakeClock())
    assert limiter.on_message(10) is None  # the byte bucket is empty now
    assert limiter.on_message(0) is None
    assert limiter.on_message(0) == MESSAGE_RATE_EXCEEDED


def test_a_message_bigger_than_byte_burst_never_passes() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(None, 100.0, byte_burst=1000.0, clock=clock)
    clock.advance(3600.0)
    assert limiter.on_message(1001) == BYTE_RATE_EXCEEDED
    assert limiter.on_message(1000) is None


def test_a_refused_message_takes_nothing() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(1.0, 1.0, message_burst=1.0, byte_burst=100.0, clock=clock)
    assert limiter.on_message(10) is None
    # Refused on the message rate: its 90 bytes are not taken.
    assert limiter.on_message(90) == MESSAGE_RATE_EXCEEDED
    clock.advance(1.0)
    assert limiter.on_message(91) is None
    # Refused on the byte rate: its message token is not taken.
    clock.advance(1.0)
    assert limiter.on_message(50) == BYTE_RATE_EXCEEDED
    assert limiter.on_message(1) is None


def test_default_bursts_are_one_seconds_worth() -> None:
    clock = FakeClock()
    limiter = MessageRateLimiter(5.0, 1000.0, clock=clock)
    assert [limiter.on_message(1) for _ in range(6)] == [None] * 5 + [MESSAGE_RATE_EXCEEDED]
    clock.advance(1.0)
    assert limiter.on_message(1000) is None
    assert limiter.on_message(1) == BYTE_RATE_EXCEEDED
    # Slower than one a second: a burst of one message.
    slow = MessageRateLimiter(0.5, None, clock=clock)
    assert [slow.on_message(0), slow.on_message(0)] == [None, MESSAGE_RATE_EXCEEDED]


def test_no_limits() -> None:
    limiter = MessageRateLimiter(None, None, clock=FakeClock())
    assert all(limiter.on_message(10**9) is None for _ in range(100))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((None, 100.0), {"message_burst": 5.0}, "message_burst given without"),
        ((5.0, None), {"byte_burst": 5.0}, "byte_burst given without"),
        ((5.0, None), {"message_burst": 0.5}, "message_burst must be at least 1"),
        ((0.0, None), {}, "messages_per_second"),
        ((None, -1.0), {}, "bytes_per_second"),
        ((None, 1.0), {"byte_burst": math.nan}, "byte_burst"),
    ],
)
def test_message_limiter_refuses_bad_configuration(
    args: tuple[float | None, float | None], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MessageRateLimiter(*args, **kwargs)


def test_negative_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="size"):
        MessageRateLimiter(1.0, 1.0).on_message(-1)


# --- PingFloodGuard ------------------------------------------------------------


def test_ping_flood_guard() -> None:
    clock = FakeClock()
    guard = PingFloodGuard(2.0, 3.0, clock=clock)
    assert [guard.allow() for _ in range(5)] == [True, True, True, False, False]
    clock.advance(0.5)
    assert [guard.allow(), guard.allow()] == [True, False]
    clock.advance(60.0)
    assert sum(guard.allow() for _ in range(10)) == 3


def test_ping_guard_answers_a_keepalive_on_the_rate() -> None:
    clock = FakeClock()
    guard = PingFloodGuard(0.05, clock=clock)  # one every 20 s, burst 1
    assert guard.allow()
    assert not guard.allow()
    for _ in range(10):
        clock.advance(20.0)
        assert guard.allow()


def test_ping_guard_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="burst must be at least 1"):
        PingFloodGuard(1.0, 0.5)
    with pytest.raises(ValueError, match="max_per_second"):
        PingFloodGuard(0.0)


# --- retry_after_header --------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (0.0, "1"),
        (-5.0, "1"),
        (0.001, "1"),
        (1.0, "1"),
        (1.2, "2"),
        (30, "30"),
        (59.5, "60"),
        (3600.0, "3600"),
    ],
)
def test_retry_after_header(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf])
def test_retry_after_header_refuses_non_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        retry_after_header(seconds)


def test_retry_after_header_for_a_rate_limited_admission() -> None:
    limiter = ConnectionRateLimiter(0.1, 1.0, clock=FakeClock())
    limiter.admit("192.0.2.1").release()
    with pytest.raises(RateLimited) as info:
        limiter.admit("192.0.2.1")
    assert retry_after_header(info.value.retry_after) == "10"
