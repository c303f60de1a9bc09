"""Frame encoding and strict frame parsing (RFC 6455 §5).

:func:`parse_frames` parses every complete frame in a buffer in one call,
straight from the ``bytes``, ``bytearray`` or ``memoryview`` it is given (one
copy per payload, unmasked on the way), and returns payloads with their first
header byte in a flat list, so a frame costs no object but its payload. It is
the C version from ``wsskit._speedups`` when that is built (see
:mod:`wsskit.protocol.mask`), else :func:`parse_frames_py`, its pure-Python
twin. :class:`FrameParser` wraps it as a generator of :data:`RawFrame` tuples.
"""

from __future__ import annotations

import collections
import os
import struct
from collections.abc import Generator
from enum import IntEnum

from ..exceptions import LocalProtocolError, PayloadTooBig, RemoteProtocolError
from .mask import apply_mask, apply_mask_py, speedups

__all__ = [
    "Opcode",
    "FrameParser",
    "RawFrame",
    "parse_frames",
    "parse_frames_py",
    "frame_size",
    "raise_violation",
    "encode_frame",
    "mask_key",
    "encode_close",
    "decode_close",
    "is_valid_received_close_code",
    "is_valid_sent_close_code",
    "MAX_CONTROL_PAYLOAD",
    "compressed_limit",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2); the others are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


# RFC 6455 §5.5: control frames carry 125 bytes of payload or less.
MAX_CONTROL_PAYLOAD = 125

_DATA_OPCODES = frozenset({0x0, 0x1, 0x2})
_CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})
_KNOWN_OPCODES = _DATA_OPCODES | _CONTROL_OPCODES

_pack_u16 = struct.Struct("!BBH").pack
_pack_u64 = struct.Struct("!BBQ").pack
_unpack_u16 = struct.Struct("!H").unpack_from
_unpack_u64 = struct.Struct("!Q").unpack_from

# (fin, rsv1, opcode, payload): the unmasked payload of one frame.
RawFrame = tuple[bool, bool, int, bytes]


# Masking keys, drawn from os.urandom() in batches: one system call per
# _KEYS_PER_DRAW frames instead of one per frame. deque.popleft() is atomic,
# so threads never share a key; a forked child starts with no keys, so it
# never repeats its parent's.
_KEYS_PER_DRAW = 256
_keys: collections.deque[bytes] = collections.deque()


def _forget_keys() -> None:
    _keys.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_keys)


def mask_key() -> bytes:
    """Return a fresh 4-byte masking key from :func:`os.urandom` (RFC 6455 §5.3).

    Every key is used once; they come from a batch of random bytes drawn at
    once, which spares a system call per frame.
    """
    try:
        return _keys.popleft()
    except IndexError:
        pool = os.urandom(4 * _KEYS_PER_DRAW)
        _keys.extend(pool[i : i + 4] for i in range(4, len(pool), 4))
        return pool[:4]


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
) -> list[bytes | bytearray | memoryview]:
    """Encode one frame as [header, payload], ready for ``writelines``.

    A client (``mask=True``) masks the payload with a fresh key from
    :func:`mask_key` (:func:`os.urandom`), as RFC 6455 §5.3 asks of an
    unpredictable source.
    """
    length = len(payload)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if mask else 0
    # RFC 6455 §5.2: the length uses the shortest of the 7, 16 and 64-bit forms.
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 0x10000:
        header = _pack_u16(first, mask_bit | 126, length)
    else:
        header = _pack_u64(first, mask_bit | 127, length)
    if not mask:
        return [header, payload]
    key = mask_key()
    return [header + key, apply_mask(payload, key)]


def is_valid_received_close_code(code: int) -> bool:
    """Tell whether a peer may send ``code`` in a Close frame (RFC 6455 §7.4)."""
    # 1004-1006 and 1015 are reserved and never sent on the wire; 1016-2999
    # are for future RFCs; 3000-4999 belong to libraries and applications.
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


def is_valid_sent_close_code(code: int) -> bool:
    """Tell whether we may send ``code`` (1005 stands for an empty Close frame)."""
    return code == 1005 or is_valid_received_close_code(code)


def encode_close(code: int, reason: str) -> bytes:
    """Encode a Close payload; code 1005 means an empty payload (no status).

    Raises :class:`LocalProtocolError` for a code that may not be sent or a
    reason longer than 123 UTF-8 bytes.
    """
    if not is_valid_sent_close_code(code):
        raise LocalProtocolError(f"invalid close code: {code}")
    if code == 1005:
        if reason:
            raise LocalProtocolError("a close without a status code cannot carry a reason")
        return b""
    encoded = reason.encode("utf-8")
    # RFC 6455 §5.5: 125 bytes of payload, 2 of them the code.
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        raise LocalProtocolError("close reason is longer than 123 bytes")
    return struct.pack("!H", code) + encoded


def decode_close(payload: bytes) -> tuple[int, str]:
    """Decode a received Close payload into (code, reason).

    An empty payload gives code 1005. Raises :class:`RemoteProtocolError` with
    1002 for a one-byte payload or an invalid code, 1007 for a reason that is
    not UTF-8 (RFC 6455 §5.5.1, §7.4).
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise RemoteProtocolError("close frame with a 1-byte payload", 1002)
    (code,) = _unpack_u16(payload)
    if not is_valid_received_close_code(code):
        raise RemoteProtocolError(f"invalid close code {code}", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("close reason is not valid UTF-8", 1007) from None
    return code, reason


def compressed_limit(limit: int) -> int:
    """The largest compressed payload allowed for ``limit`` bytes of data.

    Incompressible data grows under DEFLATE: 5 bytes per stored block, and a
    compressor cuts blocks as often as its memory level says (every 128
    bytes at level 1, 2 KiB at level 5, the level python-websockets and
    wsskit use), so a peer's frame may exceed the limit by up to about 4 %.
    The bound is zlib's own for stored data (``deflateBound``), plus room
    for the flush. What the frame inflates to is bounded by the limit itself.
    """
    return limit + (limit >> 5) + (limit >> 7) + (limit >> 11) + 64


# Frames after which the next is parsed with the same limits: final text,
# binary, ping and pong frames (FIN and opcode; RSV1 masked out).
_SAME_LIMITS_AFTER = frozenset({0x81, 0x82, 0x89, 0x8A})


def parse_frames_py(
    data: bytes | bytearray | memoryview,
    start: int,
    expect_masked: bool,
    allow_rsv1: bool,
    max_payload: int | None,
) -> tuple[list[tuple[int, bytes]], int, tuple[int, str] | None]:
    """Parse the complete frames in ``data`` from offset ``start``.

    Returns ``(frames, end, error)``: ``frames`` is a list of ``(first,
    payload)`` pairs, the first header byte (FIN, RSV1, opcode) and the
    unmasked payload as ``bytes``; ``end`` is the offset after the last frame
    parsed; ``error`` is
    None, or the ``(close code, reason)`` of the violation found at ``end``
    (1002, or 1009 for a payload over ``max_payload``). Parsing stops at an
    incomplete frame, at a violation, and after any frame but a final text,
    binary, ping or pong frame, since the caller may change the limits then
    (a fragment's budget) or stop reading (a Close).

    ``expect_masked`` is True on a server (clients must mask, RFC 6455 §5.1)
    and False on a client (servers must not). ``allow_rsv1`` is True once an
    extension that uses RSV1 (permessage-deflate) is negotiated.
    ``max_payload`` bounds a frame's payload (:func:`compressed_limit` of it
    for a compressed frame); a header that announces more is an error before
    its payload arrives. Raises :class:`ValueError` for a negative
    ``max_payload`` or a ``start`` outside ``data``.
    """
    if max_payload is not None and max_payload < 0:
        raise ValueError("max_payload must not be negative")
    end = len(data)
    if not 0 <= start <= end:
        raise ValueError("start is outside the data")
    frames: list[tuple[int, bytes]] = []
    pos = start
    error: tuple[int, str] | None = None
    while end - pos >= 2:
        b0 = data[pos]
        b1 = data[pos + 1]
        rsv1 = bool(b0 & 0x40)
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        error = _check_header(b0, b1, expect_masked, allow_rsv1)
        if error is not None:
            break
        header = 2
        if length == 126:
            if end - pos < 4:
                break
            (length,) = _unpack_u16(data, pos + 2)
            header = 4
            if length < 126:
                error = (1002, "frame length not in its shortest form")
                break
        elif length == 127:
            if end - pos < 10:
                break
            (length,) = _unpack_u64(data, pos + 2)
            header = 10
            # RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
            if length >> 63:
                error = (1002, "frame length has its top bit set")
                break
            if length < 0x10000:
                error = (1002, "frame length not in its shortest form")
                break
        if max_payload is not None:
            limit = compressed_limit(max_payload) if rsv1 else max_payload
            if length > limit:
                error = (1009, f"frame of {length} bytes exceeds the limit of {max_payload}")
                break
        if masked:
            header += 4
        payload_start = pos + header
        if end - payload_start < length:
            break
        with memoryview(data) as whole:
            view = whole[payload_start : payload_start + length]
            payload = apply_mask_py(view, whole[payload_start - 4 : payload_start]) if masked else bytes(view)
            view.release()
        frames.append((b0, payload))
        pos = payload_start + length
        if b0 & 0x8F not in _SAME_LIMITS_AFTER:
            break
    return frames, pos, error


def _check_header(b0: int, b1: int, expect_masked: bool, allow_rsv1: bool) -> tuple[int, str] | None:
    # The header checks that need only the first two bytes, in the order the
    # C twin makes them, so both report the same first violation.
    opcode = b0 & 0x0F
    rsv1 = b0 & 0x40
    if b0 & 0x30:
        return 1002, "reserved bits RSV2/RSV3 set without an extension"
    if rsv1 and not allow_rsv1:
        return 1002, "reserved bit RSV1 set without an extension"
    if opcode not in _KNOWN_OPCODES:
        return 1002, f"reserved opcode {opcode:#x}"
    if opcode >= 0x8:
        # RFC 6455 §5.5: control frames are not fragmented and carry 125 bytes or less.
        if not b0 & 0x80:
            return 1002, "fragmented control frame"
        if b1 & 0x7F > MAX_CONTROL_PAYLOAD:
            return 1002, "control frame payload over 125 bytes"
        # RFC 7692 §6: RSV1 marks a compressed message, never a control frame.
        if rsv1:
            return 1002, "RSV1 set on a control frame"
    if bool(b1 & 0x80) != expect_masked:
        if expect_masked:
            return 1002, "client frame is not masked"
        return 1002, "server frame is masked"
    return None


parse_frames = parse_frames_py if speedups is None else speedups.parse_frames


def frame_size(payload_length: int, masked: bool) -> int:
    """The size on the wire of a frame with this payload (its length in the shortest form)."""
    header = 2 if payload_length < 126 else 4 if payload_length < 0x10000 else 10
    return header + (4 if masked else 0) + payload_length


def raise_violation(error: tuple[int, str]) -> None:
    """Raise the exception for a violation :func:`parse_frames` reported.

    :class:`PayloadTooBig` for 1009, :class:`RemoteProtocolError` otherwise.
    """
    code, reason = error
    if code == 1009:
        raise PayloadTooBig(reason)
    raise RemoteProtocolError(reason, code)


class FrameParser:
    """Splits a byte buffer into validated frames, one :data:`RawFrame` at a time.

    ``expect_masked``, ``allow_rsv1`` and ``max_payload`` are as for
    :func:`parse_frames`; they may change between frames (the next frame
    is parsed with the values they have when it is asked for).
    """

    __slots__ = ("allow_rsv1", "expect_masked", "max_payload")

    def __init__(self, *, expect_masked: bool, max_payload: int | None, allow_rsv1: bool = False) -> None:
        self.expect_masked = expect_masked
        self.allow_rsv1 = allow_rsv1
        self.max_payload = max_payload

    def parse(self, buf: bytearray) -> Generator[RawFrame, None, None]:
        """Yield every complete frame at the start of ``buf``, removing them.

        Raises :class:`RemoteProtocolError` (close 1002) or :class:`PayloadTooBig`
        (close 1009) at the first invalid frame; the frames before it have been
        yielded (and removed) already.
        """
        pos = 0
        try:
            while True:
                frames, _, error = parse_frames(
                    buf, pos, self.expect_masked, self.allow_rsv1, self.max_payload
                )
                for first, payload in frames:
                    pos += frame_size(len(payload), self.expect_masked)
                    yield bool(first & 0x80), bool(first & 0x40), first & 0x0F, payload
                if error is not None:
                    raise_violation(error)
                if not frames:
                    break
        finally:
            if pos:
                del buf[:pos]
