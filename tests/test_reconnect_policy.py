"""ReconnectPolicy: jittered, capped delays and the choice of what to retry."""

from __future__ import annotations

import ssl

import pytest

from wsskit.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from wsskit.protocol.events import Reject
from wsskit.protocol.headers import Headers
from wsskit.reconnect import ReconnectPolicy, retry_after


def status(code: int, **headers: str) -> InvalidStatus:
    return InvalidStatus(Reject(code, Headers(list(headers.items()))))


def test_the_first_attempt_waits_a_random_time_up_to_first_delay() -> None:
    policy = ReconnectPolicy(first_delay=5.0)
    assert policy.delay(1, random=lambda: 0.0) == 0.0
    assert policy.delay(1, random=lambda: 0.5) == 2.5
    assert policy.ceiling(1) == 5.0


def test_later_attempts_grow_exponentially_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, factor=2.0, max_delay=30.0)
    assert [policy.ceiling(n) for n in range(2, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # Far past the cap, no overflow.
    assert policy.ceiling(10_000) == 30.0
    assert policy.delay(4, random=lambda: 0.25) == 1.0


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    import random

    rng = random.Random(7)
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=60.0)
    delays = [policy.delay(6, random=rng.random) for _ in range(200)]
    assert all(0.0 <= d <= 16.0 for d in delays)
    assert min(delays) < 2.0 and max(delays) > 14.0
    assert len(set(delays)) == 200


@pytest.mark.parametrize("code", [1001, 1006, 1011, 1012, 1013, 1014])
def test_close_codes_worth_retrying(code: int) -> None:
    failure = ConnectionClosedOK(code) if code == 1001 else ConnectionClosedError(code)
    assert ReconnectPolicy().should_retry(failure)


@pytest.mark.parametrize("code", [1000, 1002, 1003, 1007, 1008, 1009, 1010, 4000])
def test_close_codes_that_end_reconnecting(code: int) -> None:
    failure = ConnectionClosedOK(code) if code == 1000 else ConnectionClosedError(code)
    assert not ReconnectPolicy().should_retry(failure)


@pytest.mark.parametrize(("code", "retry"), [(500, True), (503, True), (429, True), (401, False)])
def test_statuses(code: int, retry: bool) -> None:
    assert ReconnectPolicy().should_retry(status(code)) is retry


def test_forbidden_and_not_found_are_never_retried() -> None:
    assert not ReconnectPolicy().should_retry(status(403))
    assert not ReconnectPolicy().should_retry(status(404))


def test_network_failures_are_retried_but_not_certificate_or_usage_errors() -> None:
    policy = ReconnectPolicy()
    assert policy.should_retry(ConnectionRefusedError())
    assert policy.should_retry(ConnectionResetError())
    assert policy.should_retry(TimeoutError())
    assert policy.should_retry(ssl.SSLEOFError())
    assert not policy.should_retry(ssl.SSLCertVerificationError())
    assert not policy.should_retry(InvalidURI("http://x", "not a WebSocket URI"))
    assert not policy.should_retry(InvalidHandshake("bad Sec-WebSocket-Accept"))


def test_retry_after_is_the_least_delay() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=60.0)
    failure = status(503, **{"Retry-After": "12"})
    assert retry_after(failure) == 12.0
    assert policy.delay(2, failure, random=lambda: 0.0) == 12.0
    # Capped at max_delay, so a server cannot park clients for a day.
    assert policy.delay(2, status(429, **{"Retry-After": "86400"}), random=lambda: 0.0) == 60.0
    # Dates and junk are ignored, and a 500's header means nothing.
    assert retry_after(status(503, **{"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) is None
    assert retry_after(status(500, **{"Retry-After": "5"})) is None


def test_giving_up() -> None:
    assert ReconnectPolicy(max_attempts=3).exhausted(3, 0.0)
    assert not ReconnectPolicy(max_attempts=3).exhausted(2, 1e9)
    assert ReconnectPolicy(max_elapsed=30).exhausted(1, 30.0)
    assert not ReconnectPolicy().exhausted(10**6, 1e9)


@pytest.mark.parametrize(
    "options",
    [
        {"first_delay": -1},
        {"max_delay": float("inf")},
        {"initial_delay": float("nan")},
        {"factor": 0.5},
        {"max_attempts": 0},
        {"max_attempts": True},
        {"stable_after": -0.1},
    ],
)
def test_invalid_options(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**options)  # type: ignore[arg-type]


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy().ceiling(0)
