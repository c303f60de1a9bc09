"""Frame encoding and strict frame parsing (RFC 6455 §5).

The parser works on a ``bytearray`` the connection appends to, and yields
plain tuples so a frame costs no object of its own.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator
from enum import IntEnum

from ..exceptions import LocalProtocolError, PayloadTooBig, RemoteProtocolError
from .mask import apply_mask

__all__ = [
    "Opcode",
    "FrameParser",
    "RawFrame",
    "encode_frame",
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
    :func:`os.urandom`, as RFC 6455 §5.3 asks of an unpredictable source.
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
    key = os.urandom(4)
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

    Incompressible data grows a little under DEFLATE (5 bytes per stored
    block of up to 64 KiB), so a compressed frame may exceed the limit by that.
    """
    return limit + limit // 1024 + 64


class FrameParser:
    """Splits a byte buffer into validated frames.

    ``expect_masked`` is True on a server (clients must mask, RFC 6455 §5.1)
    and False on a client (servers must not). ``allow_rsv1`` is True once an
    extension that uses RSV1 (permessage-deflate) is negotiated.
    ``max_payload`` bounds a frame's payload; a header that announces more
    raises :class:`PayloadTooBig` before any payload is buffered.
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
        yielded already.
        """
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                fin = bool(b0 & 0x80)
                rsv1 = bool(b0 & 0x40)
                opcode = b0 & 0x0F
                masked = bool(b1 & 0x80)
                length = b1 & 0x7F
                self._check_header(b0, opcode, fin, rsv1, masked, length)
                header = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    (length,) = _unpack_u16(buf, pos + 2)
                    header = 4
                    if length < 126:
                        raise RemoteProtocolError("frame length not in its shortest form", 1002)
                elif length == 127:
                    if end - pos < 10:
                        break
                    (length,) = _unpack_u64(buf, pos + 2)
                    header = 10
                    # RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
                    if length >> 63:
                        raise RemoteProtocolError("frame length has its top bit set", 1002)
                    if length < 0x10000:
                        raise RemoteProtocolError("frame length not in its shortest form", 1002)
                limit = self.max_payload
                if rsv1 and limit is not None:
                    limit = compressed_limit(limit)
                if limit is not None and length > limit:
                    raise PayloadTooBig(f"frame of {length} bytes exceeds the limit of {self.max_payload}")
                if masked:
                    header += 4
                if end - pos < header + length:
                    break
                start = pos + header
                if masked:
                    key = bytes(buf[start - 4 : start])
                    payload = apply_mask(memoryview(buf)[start : start + length], key)
                else:
                    payload = bytes(buf[start : start + length])
                pos = start + length
                yield fin, rsv1, opcode, payload
        finally:
            if pos:
                del buf[:pos]

    def _check_header(self, b0: int, opcode: int, fin: bool, rsv1: bool, masked: bool, length: int) -> None:
        if b0 & 0x30:
            raise RemoteProtocolError("reserved bits RSV2/RSV3 set without an extension", 1002)
        if rsv1 and not self.allow_rsv1:
            raise RemoteProtocolError("reserved bit RSV1 set without an extension", 1002)
        if opcode not in _KNOWN_OPCODES:
            raise RemoteProtocolError(f"reserved opcode {opcode:#x}", 1002)
        if opcode >= 0x8:
            # RFC 6455 §5.5: control frames are not fragmented and carry 125 bytes or less.
            if not fin:
                raise RemoteProtocolError("fragmented control frame", 1002)
            if length > MAX_CONTROL_PAYLOAD:
                raise RemoteProtocolError("control frame payload over 125 bytes", 1002)
            # RFC 7692 §6: RSV1 marks a compressed message, never a control frame.
            if rsv1:
                raise RemoteProtocolError("RSV1 set on a control frame", 1002)
        if masked != self.expect_masked:
            if self.expect_masked:
                raise RemoteProtocolError("client frame is not masked", 1002)
            raise RemoteProtocolError("server frame is masked", 1002)
