"""A lingering close for connections the server answered with an HTTP error.

When the server refuses a request (431 for a header section over the limit,
413, 429, 503...) the client may still be sending. Closing the socket with
unread bytes in its receive buffer makes the kernel send a TCP RST, and an
RST that reaches the client before it read the answer destroys the answer:
the client sees "connection reset" instead of 431. So, after the answer:

- over plain TCP: the write side is shut (``write_eof``: the answer is
  flushed, then a FIN), and whatever the client still sends is read and
  discarded, until its EOF, :data:`LINGER_BYTES` or :data:`LINGER_TIMEOUT`,
  whichever comes first; then the socket is closed.
- over TLS there is no half-close: closing sends close_notify, and the TLS
  layer then reads and discards records until the peer's close_notify or
  EOF; :data:`LINGER_TIMEOUT` bounds that too, then the connection is aborted.

The reading is done by a :class:`LingeringProtocol` that takes the transport
over (``set_protocol``), so the connection's own ``data_received`` keeps no
branch for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LINGER_TIMEOUT", "LINGER_BYTES", "LingeringProtocol", "linger"]

#: At most this long (seconds) is spent reading after an error answer.
LINGER_TIMEOUT = 2.0
#: At most this many bytes are read and discarded after an error answer.
LINGER_BYTES = 2**20


class LingeringProtocol(asyncio.Protocol):
    """Reads and discards until EOF or a bound, then closes; tells ``on_lost`` the end."""

    __slots__ = ("_budget", "_on_lost", "_timer", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        on_lost: Callable[[Exception | None], None],
        *,
        timeout: float,
        max_bytes: int,
    ) -> None:
        self._transport = transport
        self._on_lost = on_lost
        self._budget = max_bytes
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(timeout, self._stop)

    def data_received(self, data: bytes) -> None:
        """Discard; past the byte bound, close."""
        self._budget -= len(data)
        if self._budget < 0:
            self._stop()

    def eof_received(self) -> bool:
        """The client is done sending: close now (nothing unread is left)."""
        self._cancel_timer()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The end: hand it to the connection that owned the transport."""
        self._cancel_timer()
        self._on_lost(exc)

    def pause_writing(self) -> None:
        """Nothing more is written: ignored."""

    def resume_writing(self) -> None:
        """Nothing more is written: ignored."""

    def _stop(self) -> None:
        # A bound was reached: close (what is still unread may now cause an
        # RST, but the client has had its chance to read the answer). An
        # answer still unsent means the client reads nothing: drop it, as
        # close() would wait for the buffer to drain.
        self._cancel_timer()
        transport = self._transport
        if transport.get_write_buffer_size():
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def linger(
    transport: asyncio.Transport,
    on_lost: Callable[[Exception | None], None],
    *,
    timeout: float = LINGER_TIMEOUT,
    max_bytes: int = LINGER_BYTES,
) -> None:
    """Close ``transport`` after an error answer without losing the answer.

    ``on_lost(exc)`` is called when the transport is finally closed (the
    protocol's own ``connection_lost`` normally). Over a transport that can
    half-close, a :class:`LingeringProtocol` takes it over; otherwise (TLS)
    it is closed, with an abort after ``timeout`` if the peer never ends.
    """
    if transport.can_write_eof():
        transport.set_protocol(LingeringProtocol(transport, on_lost, timeout=timeout, max_bytes=max_bytes))
        transport.write_eof()
        if not transport.is_reading():
            transport.resume_reading()
        return
    transport.close()
    # abort() does nothing once the transport is closed.
    asyncio.get_running_loop().call_later(timeout, transport.abort)
