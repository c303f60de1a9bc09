"""HTTP header fields: an ordered, case-insensitive multi-map.

Also the parser and formatter for the comma-separated, parameterised header
values RFC 6455 uses (``Sec-WebSocket-Extensions``, ``Sec-WebSocket-Protocol``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Union

__all__ = ["Headers", "HeadersLike", "ExtensionOffer", "parse_list", "parse_extensions", "format_extension"]

# An extension as it appears in a header: its name and its parameters in order.
# A parameter without a value (``client_no_context_takeover``) has the value None.
ExtensionOffer = tuple[str, list[tuple[str, Union[str, None]]]]


class Headers:
    """Header fields in the order received, looked up without regard to case.

    ``headers["Host"]`` returns the only value, or raises :class:`KeyError` when
    the field is missing; :meth:`get_all` returns every value of a repeated field.
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeadersLike | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        if items is not None:
            self.update(items)

    def update(self, items: HeadersLike) -> None:
        """Append every field of ``items`` (a mapping, a Headers or pairs)."""
        pairs: Iterable[tuple[str, str]]
        if isinstance(items, Headers):
            pairs = items._items
        elif isinstance(items, Mapping):
            pairs = items.items()
        else:
            pairs = items
        for name, value in pairs:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any earlier field of the same name."""
        self._items.append((name, value))

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one holding ``value``."""
        self.remove(name)
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        """Drop every field called ``name``."""
        key = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order; an empty list when absent."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the values of ``name`` joined by ``", "``, or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(n.lower() == key for n, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """Return the fields as (name, value) pairs in order."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_token(value: str) -> bool:
    """Tell whether ``value`` is an RFC 7230 token (non-empty, tchars only)."""
    return bool(value) and all(c in _TCHARS for c in value)


def parse_list(values: Iterable[str]) -> list[str]:
    """Split comma-separated header values into tokens, dropping empty items.

    Raises :class:`ValueError` when an item is not a token
    (RFC 6455 §4.1: subprotocol names are tokens).
    """
    result: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            if not is_token(item):
                raise ValueError(f"not a token: {item!r}")
            result.append(item)
    return result


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for c in inner:
            if escaped:
                out.append(c)
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                raise ValueError("unescaped quote in quoted-string")
            else:
                out.append(c)
        if escaped:
            raise ValueError("dangling escape in quoted-string")
        return "".join(out)
    return value


def parse_extensions(values: Iterable[str]) -> list[ExtensionOffer]:
    """Parse ``Sec-WebSocket-Extensions`` values (RFC 6455 §9.1).

    Returns the extensions in order, each with its parameters. A quoted value
    is unquoted and must then be a token, as §9.1 asks. Raises
    :class:`ValueError` on malformed input.
    """
    result: list[ExtensionOffer] = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            item = item.strip(" \t")
            if not item:
                continue
            parts = [p.strip(" \t") for p in _split_outside_quotes(item, ";")]
            name = parts[0]
            if not is_token(name):
                raise ValueError(f"invalid extension name: {name!r}")
            params: list[tuple[str, str | None]] = []
            for part in parts[1:]:
                if not part:
                    raise ValueError(f"empty parameter in extension {name!r}")
                key, sep, raw = part.partition("=")
                key = key.strip(" \t")
                if not is_token(key):
                    raise ValueError(f"invalid parameter name: {key!r}")
                if not sep:
                    params.append((key, None))
                    continue
                val = _unquote(raw.strip(" \t"))
                if not is_token(val):
                    raise ValueError(f"invalid parameter value: {raw!r}")
                params.append((key, val))
            result.append((name, params))
    return result


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append(value[start:i])
            start = i + 1
    if quoted:
        raise ValueError("unterminated quoted-string")
    parts.append(value[start:])
    return parts


def format_extension(name: str, params: Iterable[tuple[str, str | None]]) -> str:
    """Format one extension with its parameters for a header value."""
    out = [name]
    for key, val in params:
        out.append(key if val is None else f"{key}={val}")
    return "; ".join(out)
