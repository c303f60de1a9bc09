"""Masking: an involution that matches the byte-by-byte definition of RFC 6455 §5.3."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.protocol.mask import apply_mask


def _reference(data: bytes, key: bytes) -> bytes:
    # RFC 6455 §5.3: octet i of the masked data is octet i XOR octet (i MOD 4) of the key.
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_matches_definition_and_round_trips(data: bytes, key: bytes) -> None:
    masked = apply_mask(data, key)
    assert masked == _reference(data, key)
    assert apply_mask(masked, key) == data


def test_rfc_example() -> None:
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    assert apply_mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


def test_accepts_memoryview_and_bytearray() -> None:
    key = b"\x01\x02\x03\x04"
    assert apply_mask(memoryview(b"abcdef"), key) == apply_mask(bytearray(b"abcdef"), key)
    assert apply_mask(b"", key) == b""


def test_rejects_bad_key() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"abc", b"\x00\x01")


@given(st.integers(0, 3000), st.binary(min_size=4, max_size=4))
def test_both_strategies_agree_around_the_threshold(size: int, key: bytes) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert apply_mask(data, key) == _reference(data, key)


def test_large_payload_round_trip() -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    key = b"\xde\xad\xbe\xef"
    assert apply_mask(apply_mask(data, key), key) == data
    assert apply_mask(memoryview(data)[1:], key)[:3] == _reference(data[1:4], key)
