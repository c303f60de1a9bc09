"""Masking: an involution that matches the byte-by-byte definition of RFC 6455 §5.3.

Every test runs through both twins (the C accelerator and pure Python): see
the ``implementation`` fixture in conftest.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.protocol import mask

pytestmark = pytest.mark.usefixtures("implementation")


def _reference(data: bytes, key: bytes) -> bytes:
    # RFC 6455 §5.3: octet i of the masked data is octet i XOR octet (i MOD 4) of the key.
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_matches_definition_and_round_trips(data: bytes, key: bytes) -> None:
    masked = mask.apply_mask(data, key)
    assert masked == _reference(data, key)
    assert mask.apply_mask(masked, key) == data


def test_rfc_example() -> None:
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    assert mask.apply_mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


def test_accepts_memoryview_and_bytearray() -> None:
    key = b"\x01\x02\x03\x04"
    assert mask.apply_mask(memoryview(b"abcdef"), key) == mask.apply_mask(bytearray(b"abcdef"), key)
    assert mask.apply_mask(b"abcdef", bytearray(key)) == mask.apply_mask(b"abcdef", memoryview(key))
    assert mask.apply_mask(b"", key) == b""


def test_returns_bytes() -> None:
    for size in (0, 5, 600):
        assert type(mask.apply_mask(bytearray(size), b"abcd")) is bytes


def test_rejects_bad_key() -> None:
    for key in (b"\x00\x01", b"", b"12345"):
        with pytest.raises(ValueError, match="4 bytes"):
            mask.apply_mask(b"abc", key)


def test_rejects_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        mask.apply_mask("text", b"abcd")  # type: ignore[arg-type]


@given(st.integers(0, 3000), st.binary(min_size=4, max_size=4))
def test_every_size_around_the_block_boundaries(size: int, key: bytes) -> None:
    # The C twin works in blocks of 64, 16 and 8 bytes, then bytes; the
    # Python twin switches strategy at 512 bytes: every remainder must agree.
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert mask.apply_mask(data, key) == _reference(data, key)


@pytest.mark.parametrize("offset", [1, 2, 3, 5, 7])
def test_unaligned_views(offset: int) -> None:
    data = bytes(range(256)) * 40
    key = b"\x9a\x0b\xfe\x33"
    view = memoryview(data)[offset:]
    assert mask.apply_mask(view, key) == _reference(data[offset:], key)


def test_large_payload_round_trip() -> None:
    # Above the size where the C twin lets other threads run while it works.
    data = bytes(range(256)) * 4096 + b"tail"
    key = b"\xde\xad\xbe\xef"
    assert mask.apply_mask(mask.apply_mask(data, key), key) == data
    assert mask.apply_mask(memoryview(data)[1:], key)[:3] == _reference(data[1:4], key)
    assert len(data) % 4 == 0
    assert mask.apply_mask(data, key)[-4:] == _reference(data[-4:], key)
