"""Sizes as people write them: one parser for the command line and the config file."""

from __future__ import annotations

import pytest

from wsskit._sizes import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("64KiB", 65536),
        (" 64kib ", 65536),
        ("2kb", 2000),
        ("16M", 16 * 1024**2),
        ("1mb", 1000**2),
        ("1.5KiB", 1536),
        ("1GiB", 1024**3),
    ],
)
def test_sizes_people_write(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1XB", "-1", "-1KiB", "inf", "nanKiB", "KiB", "1.5", "ten"])
def test_anything_else_is_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a size: .*e\.g\. 1048576, 64KiB, 1MiB"):
        parse_size(text)
