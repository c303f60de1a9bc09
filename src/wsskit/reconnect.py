"""When and how soon a client reconnects: :class:`ReconnectPolicy`.

RFC 6455 §7.2.3 asks a client that lost its connection to wait a random
time before the first reconnect attempt, so that clients dropped together do
not come back together, and to wait longer after each failed attempt. The
policy does both: the first delay is drawn from ``[0, first_delay]``, later
ones from ``[0, min(max_delay, initial_delay * factor ** n)]`` ("full
jitter"). It also says which failures are worth retrying: those that can
succeed later (the network, a server restarting or overloaded), never those
that will fail the same way again (a refused credential, a policy close, a
certificate that does not verify).

The policy holds no state and does no I/O; the client loops keep the attempt
count and the clock, and draw their randomness from the ``random`` argument.
"""

from __future__ import annotations

import math
import random as _random
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass

from .exceptions import ConnectionClosed, GiveUp, InvalidStatus, InvalidURI

__all__ = ["ReconnectPolicy", "GiveUp", "retry_after", "RETRY_CLOSE_CODES", "RETRY_STATUSES"]

#: Close codes after which a new connection can succeed: going away (1001),
#: dropped without a Close (1006), server error (1011), service restart
#: (1012), try again later (1013), bad gateway (1014).
RETRY_CLOSE_CODES: frozenset[int] = frozenset({1001, 1006, 1011, 1012, 1013, 1014})

#: HTTP statuses worth retrying: too many requests (429) and server errors.
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def _non_negative(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a reconnecting client waits, and what it retries.

    - ``first_delay``: the first attempt after a lost connection waits a
      random time up to this (RFC 6455 §7.2.3 suggests 0 to 5 seconds).
    - ``initial_delay``, ``factor``, ``max_delay``: attempt *n* (n >= 2)
      waits a random time up to ``min(max_delay, initial_delay * factor **
      (n - 2))``.
    - ``max_attempts``: give up after this many failed attempts in a row
      (None: never); ``max_elapsed``: give up once this many seconds have
      passed since the connection was lost (None: never).
    - ``retry_close_codes``, ``retry_statuses``: the close codes and HTTP
      statuses worth a new attempt. A ``Retry-After`` on a 429 or 503 is
      honoured as the least delay.
    - ``stable_after``: a connection that stayed open this long resets the
      attempt count; one that dies sooner counts as a failed attempt, so a
      server that accepts then closes at once does not get hammered.

    Raises :class:`ValueError` for negative or non-finite times, a
    ``factor`` below 1, or ``max_attempts`` below 1.
    """

    first_delay: float = 5.0
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    max_attempts: int | None = None
    max_elapsed: float | None = None
    retry_close_codes: Collection[int] = RETRY_CLOSE_CODES
    retry_statuses: Collection[int] = RETRY_STATUSES
    stable_after: float = 10.0

    def __post_init__(self) -> None:
        _non_negative("first_delay", self.first_delay)
        _non_negative("initial_delay", self.initial_delay)
        _non_negative("max_delay", self.max_delay)
        _non_negative("stable_after", self.stable_after)
        if self.max_elapsed is not None:
            _non_negative("max_elapsed", self.max_elapsed)
        if not math.isfinite(self.factor) or self.factor < 1:
            raise ValueError(f"factor must be a finite number >= 1, not {self.factor!r}")
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be an int >= 1 or None, not {self.max_attempts!r}")

    def ceiling(self, attempt: int) -> float:
        """Return the longest wait before attempt number ``attempt`` (1 is the first)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, not {attempt!r}")
        if attempt == 1:
            return self.first_delay
        try:
            return min(self.max_delay, self.initial_delay * self.factor ** (attempt - 2))
        except OverflowError:  # factor ** n outgrew any float: long past max_delay
            return self.max_delay

    def delay(
        self,
        attempt: int,
        failure: BaseException | None = None,
        *,
        random: Callable[[], float] = _random.random,
    ) -> float:
        """Return how long to wait before attempt ``attempt``: full jitter, at least any ``Retry-After``."""
        wait = random() * self.ceiling(attempt)
        hint = retry_after(failure) if failure is not None else None
        if hint is not None:
            wait = max(wait, min(hint, self.max_delay) if self.max_delay > 0 else hint)
        return wait

    def should_retry(self, failure: BaseException) -> bool:
        """Return whether a new attempt can succeed after ``failure``.

        ``failure`` is what ended the connection (a
        :class:`~wsskit.exceptions.ConnectionClosed`) or what a connection
        attempt raised.
        """
        if isinstance(failure, ConnectionClosed):
            return failure.code in self.retry_close_codes
        if isinstance(failure, InvalidStatus):
            return failure.response.status in self.retry_statuses
        if isinstance(failure, ssl.SSLError):
            # A certificate that does not verify or a TLS version nobody
            # shares fails the same way next time; a dropped handshake may not.
            return isinstance(failure, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
        if isinstance(failure, (InvalidURI, ValueError, TypeError)):
            return False
        # The network (refused, reset, unreachable, DNS) and timeouts.
        return isinstance(failure, (OSError, TimeoutError))

    def exhausted(self, attempts: int, elapsed: float) -> bool:
        """Return whether to give up after ``attempts`` failures over ``elapsed`` seconds."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed >= self.max_elapsed


def retry_after(failure: BaseException) -> float | None:
    """Return the ``Retry-After`` seconds of a 429 or 503 answer, or None.

    Only the delay-seconds form is read (RFC 9110 §10.2.3); a date or junk
    is ignored rather than trusted.
    """
    if not isinstance(failure, InvalidStatus) or failure.response.status not in (429, 503):
        return None
    value = failure.response.headers.get("Retry-After")
    if value is None or not value.strip().isdigit():
        return None
    return float(int(value.strip()))
