"""Payload masking (RFC 6455 §5.3), in pure Python.

XOR with a repeating 4-byte key is done as one big-integer XOR, which runs at
C speed inside CPython's long arithmetic instead of a Python loop per byte.
"""

from __future__ import annotations

__all__ = ["apply_mask"]


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """Return ``data`` XORed with the 4-byte masking ``key`` (masks and unmasks).

    Raises :class:`ValueError` when ``key`` is not 4 bytes long.
    """
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    size = len(data)
    if size == 0:
        return b""
    # The key repeated to cover the payload; XOR is position-aligned so the
    # byte order only has to match on both sides.
    stream = (key * ((size >> 2) + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")
