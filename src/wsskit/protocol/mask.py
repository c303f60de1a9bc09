"""Payload masking (RFC 6455 §5.3), and the choice of the C accelerator.

:func:`apply_mask` is the C version from ``wsskit._speedups`` when that
module was built and ``WSSKIT_NO_SPEEDUPS`` is not set, else
:func:`apply_mask_py`, its pure-Python twin. Both give the same results; the
tests run through both.

The pure-Python twin XORs with a repeating 4-byte key in one of two ways,
each where it is fastest:

- small payloads: one big-integer XOR, which runs inside CPython's long
  arithmetic instead of a Python loop per byte;
- larger ones: every fourth byte is XORed with the same key byte, so the
  payload is cut into four strided slices and each goes through
  ``bytes.translate`` with that key byte's table: four C loops over a quarter
  of the data each, two to three times faster than the big integer from
  about 1 KiB up.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["apply_mask", "apply_mask_py", "speedups", "SPEEDUPS"]


def _load_speedups() -> ModuleType | None:
    # WSSKIT_NO_SPEEDUPS=1 (any value but "" and "0") forces the pure-Python twins.
    if os.environ.get("WSSKIT_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from .. import _speedups
    except ImportError:  # not built: no compiler at install time, or a pure wheel
        return None
    return _speedups


#: The C accelerator module in use, or None when wsskit runs in pure Python.
speedups: ModuleType | None = _load_speedups()

#: True when the C accelerator is in use (for reports such as the benchmark's).
SPEEDUPS: bool = speedups is not None

# Below this size the big-integer XOR wins (measured on CPython 3.11).
_TRANSLATE_FROM = 512

# _TABLES[k] maps every byte b to b ^ k.
_TABLES = tuple(bytes(b ^ k for b in range(256)) for k in range(256))


def apply_mask_py(data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview) -> bytes:
    """Return ``data`` XORed with the 4-byte masking ``key`` (masks and unmasks).

    Raises :class:`ValueError` when ``key`` is not 4 bytes long.
    """
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    size = len(data)
    if size < _TRANSLATE_FROM:
        if size == 0:
            return b""
        # The key repeated to cover the payload; XOR is position-aligned so
        # the byte order only has to match on both sides.
        stream = (bytes(key) * ((size >> 2) + 1))[:size]
        value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
        return value.to_bytes(size, "little")
    out = bytearray(data)
    for offset in range(4):
        out[offset::4] = out[offset::4].translate(_TABLES[key[offset]])
    return bytes(out)


apply_mask = apply_mask_py if speedups is None else speedups.apply_mask
