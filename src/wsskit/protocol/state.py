"""The states of a WebSocket connection (RFC 6455 §4, §7), as the WHATWG API numbers them."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["State"]


class State(IntEnum):
    """Where a connection stands: the handshake, open, closing, closed."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3
