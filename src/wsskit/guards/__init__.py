"""Server guards: policy objects that admit or refuse requests and connections.

Guards see handshake requests, connections and messages, never frames. Each
is a pure policy object: it reads the time from an injected clock and does
no I/O; the asyncio server calls it and turns a refusal into an HTTP status
(a :class:`~wsskit.exceptions.Rejected`) or a close code.
"""

from __future__ import annotations

from .origin import OriginPolicy, normalize_origin
from .ratelimit import (
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

__all__ = [
    "OriginPolicy",
    "normalize_origin",
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
