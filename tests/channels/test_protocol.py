"""The channels wire protocol: parsing, validation and serialization (no I/O)."""

from __future__ import annotations

import json

import pytest

from wsskit.channels.wire import (
    MAX_ID,
    CommandError,
    History,
    Ping,
    Position,
    Presence,
    ProtocolViolation,
    Publish,
    Subscribe,
    Unsubscribe,
    WireLimits,
    check_channel,
    encode,
    error_reply,
    history_result,
    join_push,
    leave_push,
    parse_command,
    pub_push,
    result_reply,
    should_reconnect,
)


def _cmd(**fields: object) -> str:
    return json.dumps(fields)


def test_parses_every_command() -> None:
    assert parse_command(_cmd(id=1, cmd="ping")) == Ping(1)
    assert parse_command(_cmd(id=2, cmd="subscribe", channel="chat:a")) == Subscribe(2, "chat:a")
    since = {"offset": 4, "epoch": "e1"}
    assert parse_command(_cmd(id=3, cmd="subscribe", channel="a", since=since, token="t")) == Subscribe(
        3, "a", Position(4, "e1"), "t"
    )
    assert parse_command(_cmd(id=4, cmd="unsubscribe", channel="a")) == Unsubscribe(4, "a")
    assert parse_command(_cmd(id=5, cmd="publish", channel="a", data=None, idempotency_key="k")) == Publish(
        5, "a", None, "k"
    )
    assert parse_command(_cmd(id=6, cmd="history", channel="a", limit=0)) == History(6, "a", None, 0)
    assert parse_command(_cmd(id=MAX_ID, cmd="presence", channel="a")) == Presence(MAX_ID, "a")


@pytest.mark.parametrize(
    "message",
    [
        b'{"id": 1, "cmd": "ping"}',
        "",
        "nope",
        "[]",
        '"id"',
        '{"id": 1, "cmd": "ping"',
        _cmd(cmd="ping"),
        _cmd(id=0, cmd="ping"),
        _cmd(id=MAX_ID + 1, cmd="ping"),
        _cmd(id=True, cmd="ping"),
        _cmd(id=1.0, cmd="ping"),
        _cmd(id="1", cmd="ping"),
        '{"id": 1, "cmd": "publish", "channel": "a", "data": NaN}',
        "[" * 100000 + "]" * 100000,
    ],
)
def test_violations(message: str | bytes) -> None:
    with pytest.raises(ProtocolViolation):
        parse_command(message, WireLimits(max_message_size=10**6))


def test_a_message_over_the_size_limit_is_a_violation() -> None:
    limits = WireLimits(max_message_size=100)
    small = _cmd(id=1, cmd="publish", channel="a", data="x" * 40)
    assert isinstance(parse_command(small, limits), Publish)
    with pytest.raises(ProtocolViolation):
        parse_command(_cmd(id=1, cmd="publish", channel="a", data="x" * 100), limits)
    # Measured in UTF-8 bytes, not characters.
    with pytest.raises(ProtocolViolation):
        parse_command(_cmd(id=1, cmd="publish", channel="a", data="é" * 40), limits)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"cmd": "dance"}, 101),
        ({}, 101),
        ({"cmd": "ping", "channel": "a"}, 102),
        ({"cmd": "subscribe"}, 102),
        ({"cmd": "subscribe", "channel": ""}, 102),
        ({"cmd": "subscribe", "channel": 7}, 102),
        ({"cmd": "subscribe", "channel": "a b"}, 102),
        ({"cmd": "subscribe", "channel": "a.b"}, 102),
        ({"cmd": "subscribe", "channel": "x" * 256}, 105),
        ({"cmd": "subscribe", "channel": "a", "since": {"offset": 1}}, 102),
        ({"cmd": "subscribe", "channel": "a", "since": {"offset": "1", "epoch": "e"}}, 102),
        ({"cmd": "subscribe", "channel": "a", "since": {"offset": 1, "epoch": ""}}, 102),
        ({"cmd": "subscribe", "channel": "a", "since": {"offset": 1, "epoch": "e" * 65}}, 102),
        ({"cmd": "subscribe", "channel": "a", "token": 5}, 102),
        ({"cmd": "publish", "channel": "a"}, 102),
        ({"cmd": "publish", "channel": "a", "data": 1, "idempotency_key": "has space"}, 102),
        ({"cmd": "publish", "channel": "a", "data": 1, "idempotency_key": "k" * 129}, 102),
        ({"cmd": "history", "channel": "a", "limit": -1}, 102),
        ({"cmd": "history", "channel": "a", "limit": True}, 102),
        ({"cmd": "history", "channel": "a", "limit": 1001}, 105),
    ],
)
def test_command_errors(fields: dict[str, object], code: int) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(_cmd(id=9, **fields))
    assert (info.value.id, info.value.code) == (9, code)


def test_channel_names() -> None:
    assert check_channel("chat:room_1-b@x=y/z+w,v") == "chat:room_1-b@x=y/z+w,v"
    assert check_channel("x" * 10, WireLimits(max_channel_length=10)) == "x" * 10
    for bad in ("", "a b", "a.b", "a*", "a>", "é", "x" * 256, None):
        with pytest.raises(ValueError):
            check_channel(bad)


def test_serialization() -> None:
    assert json.loads(result_reply(3)) == {"id": 3, "result": {}}
    assert json.loads(error_reply(3, 103)) == {
        "id": 3,
        "error": {"code": 103, "message": "permission denied"},
    }
    assert json.loads(pub_push("c", 5, "e", {"é": 1})) == {
        "push": "pub",
        "channel": "c",
        "offset": 5,
        "epoch": "e",
        "data": {"é": 1},
    }
    assert "é" in pub_push("c", 5, "e", "é")  # not escaped: shorter on the wire
    assert json.loads(join_push("c", "id1", "alice")) == {
        "push": "join",
        "channel": "c",
        "info": {"client": "id1", "user": "alice"},
    }
    assert json.loads(leave_push("c", "id1", None))["info"] == {"client": "id1", "user": None}
    assert history_result([(1, "a")], 1, "e", True) == {
        "epoch": "e",
        "offset": 1,
        "recovered": True,
        "publications": [{"offset": 1, "data": "a"}],
    }
    with pytest.raises(ValueError):
        encode({"x": float("inf")})


def test_reconnect_advice() -> None:
    assert should_reconnect(None) is True
    assert [should_reconnect(c) for c in (4000, 4001, 4002, 1001, 1006, 1011, 4100)] == [True] * 7
    assert [should_reconnect(c) for c in (1000, 1008, 1009, 4003, 4008, 4500, 4999, 3000)] == [False] * 8


def test_wire_limits_are_validated() -> None:
    for bad in ({"max_message_size": 10}, {"max_channel_length": 0}, {"max_history_limit": 0}):
        with pytest.raises(ValueError):
            WireLimits(**bad)  # type: ignore[arg-type]
