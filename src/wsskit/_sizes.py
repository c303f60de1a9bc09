"""Sizes as people write them (1048576, 64KiB, 1MiB, 16M, 2kb), for the command line and the config file."""

from __future__ import annotations

import math

__all__ = ["SIZE_EXAMPLES", "parse_size"]

#: Binary units for K/M/G (KiB, MiB, GiB, and the bare letters), decimal for kb and mb.
_UNITS = {
    "kib": 1024,
    "kb": 1000,
    "k": 1024,
    "mib": 1024**2,
    "mb": 1000**2,
    "m": 1024**2,
    "gib": 1024**3,
}
# Longest suffix first: "kib" before "k"... and "b" alone is no unit.
_BY_LENGTH = sorted(_UNITS.items(), key=lambda item: -len(item[0]))

#: What a size looks like, for error messages.
SIZE_EXAMPLES = "e.g. 1048576, 64KiB, 1MiB"


def parse_size(text: str) -> int:
    """Return the number of bytes ``text`` says (0 or more), with an optional unit.

    Case and surrounding spaces do not matter; a fraction with a unit is
    rounded down (``1.5KiB`` is 1536). Raises :class:`ValueError` for
    anything else, negative and non-finite numbers included.
    """
    value = text.strip().lower()
    number, factor = value, 1
    for suffix, unit in _BY_LENGTH:
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], unit
            break
    try:
        size = float(number) * factor if factor != 1 else int(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} ({SIZE_EXAMPLES})") from None
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"not a size: {text!r} ({SIZE_EXAMPLES})")
    return int(size)
