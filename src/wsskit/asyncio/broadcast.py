"""Send one message to many connections at once: :func:`broadcast`.

The message is framed once: every open server connection that does not
compress it gets the very same bytes. A connection with permessage-deflate
that would compress the message gets its own frame, compressed with its own
context (RFC 7692 §7.2.1: the peer's window depends on what this connection
sent before); so does a client connection, whose every frame needs a fresh
masking key (RFC 6455 §5.3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..protocol.frames import Opcode, encode_frame
from .connection import Connection, DataLike

__all__ = ["broadcast", "BroadcastResult"]

logger = logging.getLogger("wsskit.broadcast")

_BYTES_LIKE = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What :func:`broadcast` did.

    - ``sent``: connections the message was written to (or handed to their
      transport's buffer);
    - ``skipped``: open connections left out because their write buffer was
      over its limit (a slow reader) or they were in the middle of sending a
      fragmented message, whose frames another message may not interleave;
    - ``failed``: connections where writing raised; the error is logged.

    Connections that are not open (still in the handshake, closing, closed)
    are not counted.
    """

    sent: int = 0
    skipped: int = 0
    failed: int = 0


def broadcast(
    connections: Iterable[Connection], message: DataLike, *, log_skipped: bool = False
) -> BroadcastResult:
    """Send ``message`` to every open connection of ``connections``, without waiting.

    ``str`` goes as a text message, a bytes-like object as a binary one. The
    message is written at once to each transport: unlike ``send()``, nothing
    waits for a slow reader, so a connection whose write buffer is over its
    ``write_limit`` is skipped rather than buffered without bound, and so is
    one that is sending a fragmented message. With ``log_skipped`` each
    skipped connection is logged (a warning on the ``wsskit.broadcast``
    logger).

    Never raises because of one connection: an error writing to a connection
    is logged and counted, and the others still get the message. Raises
    :class:`TypeError` when ``message`` is neither ``str`` nor bytes-like.
    """
    if isinstance(message, str):
        payload: bytes | bytearray | memoryview = message.encode("utf-8")
        opcode = Opcode.TEXT
    elif isinstance(message, _BYTES_LIKE):
        payload = message
        opcode = Opcode.BINARY
    else:
        raise TypeError(f"cannot broadcast {type(message).__name__}; send str or bytes")
    size = len(payload)
    frame: bytes | None = None
    sent = skipped = failed = 0
    for connection in connections:
        try:
            if frame is None:
                # Framed once, on first use, as one bytes object (one write
                # each): the frame every server connection shares unless it
                # compresses the message.
                header, body = encode_frame(opcode, payload)
                frame = bytes(header) + bytes(body)
            outcome = connection._write_broadcast(message, frame, size)
        except Exception:
            failed += 1
            logger.exception("broadcast: error while writing to %r", connection)
            continue
        if outcome is None:
            sent += 1
        elif outcome != "closed":
            skipped += 1
            if log_skipped:
                logger.warning("broadcast: skipped %r: %s", connection, _WHY[outcome])
    return BroadcastResult(sent, skipped, failed)


_WHY = {
    "slow": "its write buffer is over its limit",
    "fragmenting": "it is sending a fragmented message",
}
