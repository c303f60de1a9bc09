"""Events: frozen value objects; a Request knows its path, query and whether it upgrades."""

from __future__ import annotations

import dataclasses

import pytest

from wsskit.exceptions import InvalidHandshake
from wsskit.protocol.events import Accept, Close, Reject, Request, TextMessage
from wsskit.protocol.headers import Headers


def test_request_path_and_query() -> None:
    request = Request("/chat/room?token=abc&x=1&x=2", Headers())
    assert request.path == "/chat/room"
    assert request.query == {"token": "abc", "x": "2"}
    assert request.is_upgrade


def test_request_with_error_is_not_an_upgrade() -> None:
    request = Request("/", Headers(), error=InvalidHandshake("plain GET", 426))
    assert not request.is_upgrade


def test_events_are_frozen_values() -> None:
    assert TextMessage("a") == TextMessage("a", fin=True)
    assert Close() == Close(1000, "")
    assert Accept().headers == Headers() and Reject().status == 403
    with pytest.raises(dataclasses.FrozenInstanceError):
        TextMessage("a").data = "b"  # type: ignore[misc]


@pytest.mark.parametrize("target", ["//[x/", "//[::~]/?a=1", "//a]/"])
def test_odd_targets_never_raise(target: str) -> None:
    # Found by fuzzing: urlsplit raised on these, and every log line touching .path with it.
    request = Request(target, Headers())
    assert request.path == target.partition("?")[0]
    assert isinstance(request.query, dict)
