"""The channels wire protocol (``wsskit.channels.v1``): parse, validate, serialize.

Pure code: no I/O, no clock. A client sends commands as JSON text messages; the
server answers each with a reply carrying the command's ``id`` and sends pushes
(publications, join, leave) without one. ``docs/channels-protocol.md`` is the
normative description; this module is its implementation.

:func:`parse_command` turns one received message into a :class:`Command` or
raises :class:`ProtocolViolation` (the connection must be closed with
:data:`CLOSE_BAD_PROTOCOL`) or :class:`CommandError` (answer the command with an
error and go on). The ``*_reply`` and ``*_push`` functions build the text to send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Union

__all__ = [
    "is_idempotency_key",
    "SUBPROTOCOL",
    "PATH",
    "MAX_ID",
    "ErrorCode",
    "CloseCode",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_SHUTDOWN",
    "CLOSE_INSUFFICIENT_STATE",
    "CLOSE_PERMISSION_REVOKED",
    "CLOSE_BAD_PROTOCOL",
    "CLOSE_CODES",
    "should_reconnect",
    "WireLimits",
    "Position",
    "Subscribe",
    "Unsubscribe",
    "Publish",
    "History",
    "Presence",
    "Ping",
    "Command",
    "CommandError",
    "ProtocolViolation",
    "check_channel",
    "parse_command",
    "result_reply",
    "error_reply",
    "publication_json",
    "pub_push",
    "join_push",
    "leave_push",
    "history_result",
    "encode",
]

#: The WebSocket subprotocol a channels client offers and the server selects.
SUBPROTOCOL: Final = "wsskit.channels.v1"
#: The path ``wsskit serve`` answers the channels protocol on.
PATH: Final = "/channels"
#: The largest command id: 2**53 - 1, so that JavaScript numbers hold every id exactly.
MAX_ID: Final = 2**53 - 1


class ErrorCode:
    """Numbered error codes carried by ``{"id", "error": {"code", "message"}}`` replies."""

    INTERNAL: Final = 100
    UNKNOWN_COMMAND: Final = 101
    BAD_REQUEST: Final = 102
    PERMISSION_DENIED: Final = 103
    UNKNOWN_CHANNEL: Final = 104
    LIMIT_EXCEEDED: Final = 105
    ALREADY_SUBSCRIBED: Final = 106
    NOT_SUBSCRIBED: Final = 107
    UNAVAILABLE: Final = 108
    TOO_MANY_REQUESTS: Final = 109

    #: The default message for each code.
    MESSAGES: Final[Mapping[int, str]] = {
        100: "internal error",
        101: "unknown command",
        102: "bad request",
        103: "permission denied",
        104: "unknown channel namespace",
        105: "limit exceeded",
        106: "already subscribed",
        107: "not subscribed",
        108: "unavailable",
        109: "too many requests",
    }


@dataclass(frozen=True, slots=True)
class CloseCode:
    """A WebSocket close code the server may end a channels connection with."""

    code: int
    reason: str
    reconnect: bool


CLOSE_SLOW_CONSUMER: Final = CloseCode(4000, "slow consumer", True)
CLOSE_SHUTDOWN: Final = CloseCode(4001, "server shutting down", True)
CLOSE_INSUFFICIENT_STATE: Final = CloseCode(4002, "insufficient state", True)
CLOSE_PERMISSION_REVOKED: Final = CloseCode(4003, "permission revoked", False)
CLOSE_BAD_PROTOCOL: Final = CloseCode(4008, "bad protocol usage", False)

#: Every close code a client may see, with whether it should reconnect. Codes
#: 4000-4499 not listed here mean "reconnect", 4500-4999 "do not reconnect".
CLOSE_CODES: Final[Mapping[int, bool]] = {
    1000: False,  # the server ended the session on purpose
    1001: True,  # going away: a restart or a drain; reconnect (to another node)
    1006: True,  # the connection dropped without a Close
    1008: False,  # policy violation: credentials expired, rate limit; fix before retrying
    1009: False,  # a message over the size limit
    1011: True,  # internal error on the server
    1012: True,  # service restart
    1013: True,  # try again later
    4000: True,
    4001: True,
    4002: True,
    4003: False,
    4008: False,
}


def should_reconnect(code: int | None) -> bool:
    """Whether a client whose connection closed with ``code`` should reconnect (and resume).

    None (no close code: the connection dropped) means yes. Unknown codes in
    the private range 4000-4499 mean yes, 4500-4999 no; other unknown codes no.
    """
    if code is None:
        return True
    if code in CLOSE_CODES:
        return CLOSE_CODES[code]
    return 4000 <= code < 4500


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds every command is checked against.

    ``max_message_size`` in bytes of UTF-8 (the whole JSON text);
    ``max_channel_length`` in characters; ``max_history_limit`` caps the
    ``limit`` of a history command.
    """

    max_message_size: int = 65536
    max_channel_length: int = 255
    max_history_limit: int = 1000

    def __post_init__(self) -> None:
        if self.max_message_size < 64:
            raise ValueError("max_message_size must be at least 64 bytes")
        if not 1 <= self.max_channel_length <= 1024:
            raise ValueError("max_channel_length must be between 1 and 1024")
        if self.max_history_limit < 1:
            raise ValueError("max_history_limit must be at least 1")


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: the last offset seen and the stream's epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    channel: str
    since: Position | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: int
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    id: int
    channel: str
    data: Any
    idempotency_key: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    id: int
    channel: str
    since: Position | None = None
    limit: int | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    id: int
    channel: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


Command = Union[Subscribe, Unsubscribe, Publish, History, Presence, Ping]


class ProtocolViolation(Exception):
    """A message that is not a command at all (not JSON, not an object, no valid id).

    The server closes the connection with :data:`CLOSE_BAD_PROTOCOL` (4008):
    without an id there is nothing to answer.
    """


class CommandError(Exception):
    """A command with a valid id that cannot be carried out: answer ``{"id", "error"}``."""

    def __init__(self, id: int, code: int, message: str | None = None) -> None:
        self.id = id
        self.code = code
        self.message = message if message is not None else ErrorCode.MESSAGES.get(code, "error")
        super().__init__(f"{self.code}: {self.message}")


# Letters, digits and a few separators: safe in URLs, Redis keys and NATS
# subjects once mapped ("." and "*" / ">" are reserved there, so are left out).
_CHANNEL = re.compile(r"[A-Za-z0-9_\-:@=/+,]+")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def is_idempotency_key(value: object) -> bool:
    """True for a valid idempotency key: 1 to 128 printable ASCII characters, no space.

    The same rule for every way in (the channel protocol, ``POST /api/publish``),
    so a key that one accepts the other does too.
    """
    return isinstance(value, str) and _IDEMPOTENCY_KEY.fullmatch(value) is not None


_TOKEN_MAX = 1024
_COMMANDS = ("subscribe", "unsubscribe", "publish", "history", "presence", "ping")
# Fields each command accepts besides "id" and "cmd": anything else is a bad request.
_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "subscribe": frozenset({"channel", "since", "token"}),
    "unsubscribe": frozenset({"channel"}),
    "publish": frozenset({"channel", "data", "idempotency_key", "token"}),
    "history": frozenset({"channel", "since", "limit", "token"}),
    "presence": frozenset({"channel", "token"}),
    "ping": frozenset(),
}


def check_channel(channel: object, limits: WireLimits = WireLimits()) -> str:
    """Return ``channel`` if it is a valid channel name, else raise :class:`ValueError`.

    A name is 1 to ``limits.max_channel_length`` characters among ASCII
    letters, digits and ``_ - : @ = / + ,``.
    """
    if not isinstance(channel, str) or not channel:
        raise ValueError("a channel is a non-empty string")
    if len(channel) > limits.max_channel_length:
        raise ValueError(f"a channel name is at most {limits.max_channel_length} characters")
    if _CHANNEL.fullmatch(channel) is None:
        raise ValueError("a channel name holds only letters, digits and _ - : @ = / + ,")
    return channel


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6), though Python's parser takes them.
    raise ValueError(f"{name} is not valid JSON")


def parse_command(message: str | bytes, limits: WireLimits = WireLimits()) -> Command:
    """Parse one received WebSocket message into a command.

    Raises :class:`ProtocolViolation` for a binary message, a message over
    ``limits.max_message_size``, text that is not a JSON object, or an object
    without a valid ``id`` (an integer from 1 to :data:`MAX_ID`); raises
    :class:`CommandError` (101 for an unknown ``cmd``, 102 for bad fields,
    105 for a name or limit over the bounds) when the id is valid.
    """
    if not isinstance(message, str):
        raise ProtocolViolation("commands are JSON text messages, not binary")
    # A character takes at most 4 bytes in UTF-8: skip encoding short messages.
    if len(message) * 4 > limits.max_message_size and len(message.encode()) > limits.max_message_size:
        raise ProtocolViolation(f"a command is at most {limits.max_message_size} bytes")
    try:
        obj = json.loads(message, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolViolation("a command is a JSON object") from exc
    if not isinstance(obj, dict):
        raise ProtocolViolation("a command is a JSON object")
    raw_id = obj.get("id")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool) or not 1 <= raw_id <= MAX_ID:
        raise ProtocolViolation(f"a command has an integer id from 1 to {MAX_ID}")
    id: int = raw_id
    cmd = obj.get("cmd")
    if cmd not in _COMMANDS:
        raise CommandError(id, ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}"[:200])
    extra = obj.keys() - {"id", "cmd"} - _FIELDS[cmd]
    if extra:
        raise CommandError(id, ErrorCode.BAD_REQUEST, f"unknown field {sorted(extra)[0]!r}"[:200])
    if cmd == "ping":
        return Ping(id)
    channel = _channel(id, obj, limits)
    if cmd == "unsubscribe":
        return Unsubscribe(id, channel)
    token = _optional_str(id, obj, "token", _TOKEN_MAX)
    if cmd == "subscribe":
        return Subscribe(id, channel, _since(id, obj), token)
    if cmd == "publish":
        if "data" not in obj:
            raise CommandError(id, ErrorCode.BAD_REQUEST, "publish needs data")
        key = _optional_str(id, obj, "idempotency_key", 128)
        if key is not None and not is_idempotency_key(key):
            raise CommandError(id, ErrorCode.BAD_REQUEST, "an idempotency key is 1 to 128 printable ASCII")
        return Publish(id, channel, obj["data"], key, token)
    if cmd == "history":
        limit = obj.get("limit")
        if limit is not None:
            if not _is_int(limit) or limit < 0:
                raise CommandError(id, ErrorCode.BAD_REQUEST, "limit is a non-negative integer")
            if limit > limits.max_history_limit:
                raise CommandError(
                    id, ErrorCode.LIMIT_EXCEEDED, f"limit is at most {limits.max_history_limit}"
                )
        return History(id, channel, _since(id, obj), limit, token)
    return Presence(id, channel, token)


def _channel(id: int, obj: Mapping[str, Any], limits: WireLimits) -> str:
    channel = obj.get("channel")
    if isinstance(channel, str) and len(channel) > limits.max_channel_length:
        raise CommandError(
            id, ErrorCode.LIMIT_EXCEEDED, f"a channel name is at most {limits.max_channel_length} characters"
        )
    try:
        return check_channel(channel, limits)
    except ValueError as exc:
        raise CommandError(id, ErrorCode.BAD_REQUEST, str(exc)) from None


def _optional_str(id: int, obj: Mapping[str, Any], name: str, max_length: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise CommandError(id, ErrorCode.BAD_REQUEST, f"{name} is a string of 1 to {max_length} characters")
    return value


def _since(id: int, obj: Mapping[str, Any]) -> Position | None:
    since = obj.get("since")
    if since is None:
        return None
    if not isinstance(since, dict) or since.keys() != {"offset", "epoch"}:
        raise CommandError(id, ErrorCode.BAD_REQUEST, "since is {offset, epoch}")
    offset, epoch = since["offset"], since["epoch"]
    if not _is_int(offset) or not 0 <= offset <= MAX_ID:
        raise CommandError(id, ErrorCode.BAD_REQUEST, "since.offset is a non-negative integer")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= 64:
        raise CommandError(id, ErrorCode.BAD_REQUEST, "since.epoch is a string of 1 to 64 characters")
    return Position(offset, epoch)


# -- serializing --------------------------------------------------------------


def encode(obj: Mapping[str, Any]) -> str:
    """Serialize one message: compact JSON, non-ASCII kept as is, NaN refused.

    Raises :class:`ValueError` for values JSON cannot carry (NaN, infinities)
    and :class:`TypeError` for objects it cannot serialize.
    """
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def result_reply(id: int, result: Mapping[str, Any] | None = None) -> str:
    """``{"id": id, "result": {...}}``."""
    return encode({"id": id, "result": dict(result) if result is not None else {}})


def error_reply(id: int | None, code: int, message: str | None = None) -> str:
    """``{"id": id, "error": {"code": code, "message": message}}``."""
    text = message if message is not None else ErrorCode.MESSAGES.get(code, "error")
    return encode({"id": id, "error": {"code": code, "message": text}})


def publication_json(offset: int, data: Any) -> dict[str, Any]:
    """One publication inside a subscribe or history reply: ``{"offset", "data"}``."""
    return {"offset": offset, "data": data}


def pub_push(channel: str, offset: int, epoch: str, data: Any) -> str:
    """The push of a live publication."""
    return encode({"push": "pub", "channel": channel, "offset": offset, "epoch": epoch, "data": data})


def _client(client: str, user: str | None) -> dict[str, Any]:
    return {"client": client, "user": user}


def join_push(channel: str, client: str, user: str | None) -> str:
    """The push announcing a client that subscribed to a channel with presence."""
    return encode({"push": "join", "channel": channel, "info": _client(client, user)})


def leave_push(channel: str, client: str, user: str | None) -> str:
    """The push announcing a client that left a channel with presence."""
    return encode({"push": "leave", "channel": channel, "info": _client(client, user)})


def history_result(
    publications: Sequence[tuple[int, Any]], offset: int, epoch: str, recovered: bool
) -> dict[str, Any]:
    """The ``result`` of a subscribe or history reply."""
    return {
        "epoch": epoch,
        "offset": offset,
        "recovered": recovered,
        "publications": [publication_json(o, d) for o, d in publications],
    }
