"""Limits: safe defaults, and the effective frame limit."""

from __future__ import annotations

import dataclasses

import pytest

from wsskit.protocol.limits import Limits


def test_defaults_are_on() -> None:
    limits = Limits()
    assert limits.max_message_size == 2**20
    assert limits.max_fragments is not None
    assert limits.frame_limit == 2**20


@pytest.mark.parametrize(
    ("message", "frame", "effective"),
    [(100, None, 100), (100, 50, 50), (50, 100, 50), (None, 70, 70), (None, None, None)],
)
def test_frame_limit_is_the_tighter_one(
    message: int | None, frame: int | None, effective: int | None
) -> None:
    assert Limits(max_message_size=message, max_frame_size=frame).frame_limit == effective


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().max_message_size = 1  # type: ignore[misc]
