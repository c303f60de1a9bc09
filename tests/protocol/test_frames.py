"""Frame encoding and strict parsing (RFC 6455 §5), fed in every split."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.exceptions import LocalProtocolError, PayloadTooBig, RemoteProtocolError
from wsskit.protocol.frames import (
    FrameParser,
    Opcode,
    RawFrame,
    decode_close,
    encode_close,
    encode_frame,
    is_valid_received_close_code,
)


def _wire(*parts: bytes | bytearray | memoryview) -> bytes:
    return b"".join(bytes(p) for p in parts)


def _parse_all(data: bytes, *, masked: bool, limit: int | None = None, rsv1: bool = False) -> list[RawFrame]:
    parser = FrameParser(expect_masked=masked, max_payload=limit, allow_rsv1=rsv1)
    buf = bytearray(data)
    frames = list(parser.parse(buf))
    assert not buf, "a complete input leaves nothing behind"
    return frames


def _parse_in_splits(data: bytes, cuts: list[int], *, masked: bool) -> list[RawFrame]:
    parser = FrameParser(expect_masked=masked, max_payload=None)
    buf = bytearray()
    frames: list[RawFrame] = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        buf += data[last:cut]
        last = cut
        frames.extend(parser.parse(buf))
    assert not buf
    return frames


frame_strategy = st.tuples(
    st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT]),
    st.one_of(st.binary(max_size=200), st.binary(min_size=126, max_size=70_000)),
    st.booleans(),
)


@given(st.lists(frame_strategy, min_size=1, max_size=4), st.booleans(), st.data())
def test_round_trip_in_every_split(
    frames: list[tuple[int, bytes, bool]], masked: bool, data: st.DataObject
) -> None:
    wire = b"".join(_wire(*encode_frame(op, payload, fin=fin, mask=masked)) for op, payload, fin in frames)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    expected = [(fin, False, int(op), payload) for op, payload, fin in frames]
    assert _parse_in_splits(wire, cuts, masked=masked) == expected


def test_round_trip_byte_by_byte_all_length_forms() -> None:
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        wire = _wire(*encode_frame(Opcode.BINARY, payload, mask=True))
        parser = FrameParser(expect_masked=True, max_payload=None)
        buf = bytearray()
        got: list[RawFrame] = []
        step = 1 if size < 200 else 997
        for i in range(0, len(wire), step):
            buf += wire[i : i + step]
            got.extend(parser.parse(buf))
        assert got == [(True, False, 2, payload)]


def test_length_uses_shortest_form() -> None:
    assert len(encode_frame(Opcode.TEXT, b"x" * 125)[0]) == 2
    assert len(encode_frame(Opcode.TEXT, b"x" * 126)[0]) == 4
    assert len(encode_frame(Opcode.TEXT, b"x" * 65535)[0]) == 4
    assert len(encode_frame(Opcode.TEXT, b"x" * 65536)[0]) == 10
    assert len(encode_frame(Opcode.TEXT, b"x", mask=True)[0]) == 6


def test_rfc_examples() -> None:
    # RFC 6455 §5.7 examples.
    assert _parse_all(bytes.fromhex("810548656c6c6f"), masked=False) == [(True, False, 1, b"Hello")]
    assert _parse_all(bytes.fromhex("818537fa213d7f9f4d5158"), masked=True) == [(True, False, 1, b"Hello")]
    assert _parse_all(bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"), masked=False) == [
        (False, False, 1, b"Hel"),
        (True, False, 0, b"lo"),
    ]
    assert _parse_all(bytes.fromhex("890548656c6c6f"), masked=False) == [(True, False, 9, b"Hello")]
    assert encode_frame(Opcode.TEXT, b"Hello") == [bytes.fromhex("8105"), b"Hello"]


def test_masking_uses_fresh_keys() -> None:
    keys = {encode_frame(Opcode.TEXT, b"a", mask=True)[0][2:] for _ in range(20)}
    assert len(keys) > 1


@pytest.mark.parametrize(
    ("wire", "masked", "message"),
    [
        (b"\xa1\x00", False, "RSV2"),
        (b"\x91\x00", False, "RSV2/RSV3"),
        (b"\xc1\x00", False, "RSV1"),
        (b"\x83\x00", False, "reserved opcode"),
        (b"\x87\x00", False, "reserved opcode"),
        (b"\x8b\x00", False, "reserved opcode"),
        (b"\x8f\x00", False, "reserved opcode"),
        (b"\x09\x00", False, "fragmented control"),
        (b"\x89\x7e\x00\x7e" + b"x" * 126, False, "over 125"),
        (b"\x81\x00", True, "not masked"),
        (b"\x81\x80abcd", False, "is masked"),
        (b"\x82\x7e\x00\x05hello", False, "shortest form"),
        (b"\x82\x7f" + struct.pack("!Q", 65535), False, "shortest form"),
        (b"\x82\x7f" + struct.pack("!Q", 1 << 63), False, "top bit"),
    ],
)
def test_violations_are_1002(wire: bytes, masked: bool, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message) as info:
        _parse_all(wire, masked=masked)
    assert info.value.close_code == 1002


def test_rsv1_control_frame_refused_even_with_extension() -> None:
    with pytest.raises(RemoteProtocolError, match="control frame"):
        _parse_all(b"\xc9\x00", masked=False, rsv1=True)


def test_rsv1_allowed_on_data_with_extension() -> None:
    assert _parse_all(b"\xc1\x01x", masked=False, rsv1=True) == [(True, True, 1, b"x")]


def test_oversized_frame_refused_from_its_header() -> None:
    parser = FrameParser(expect_masked=False, max_payload=1000)
    buf = bytearray(b"\x82\x7e\x03\xe9")  # announces 1001 bytes, sends none of them
    with pytest.raises(PayloadTooBig) as info:
        list(parser.parse(buf))
    assert info.value.close_code == 1009
    huge = bytearray(b"\x82\x7f" + struct.pack("!Q", 2**62))
    with pytest.raises(PayloadTooBig):
        list(FrameParser(expect_masked=False, max_payload=1 << 20).parse(huge))


def test_compressed_frame_may_exceed_limit_by_deflate_overhead() -> None:
    parser = FrameParser(expect_masked=False, max_payload=1000, allow_rsv1=True)
    assert list(parser.parse(bytearray(b"\xc2\x7e\x03\xf0" + b"x" * 1008))) == [(True, True, 2, b"x" * 1008)]


def test_frames_before_a_violation_are_delivered_and_removed() -> None:
    parser = FrameParser(expect_masked=False, max_payload=None)
    buf = bytearray(b"\x81\x01a\x83\x00")
    got: list[RawFrame] = []
    with pytest.raises(RemoteProtocolError):
        for frame in parser.parse(buf):
            got.append(frame)
    assert got == [(True, False, 1, b"a")]
    assert buf == bytearray(b"\x83\x00")


def test_incomplete_header_waits() -> None:
    parser = FrameParser(expect_masked=False, max_payload=None)
    for partial in (b"\x82", b"\x82\x7e\x00", b"\x82\x7f\x00\x00", b"\x82\x05abc"):
        buf = bytearray(partial)
        assert list(parser.parse(buf)) == []
        assert buf == bytearray(partial)


def test_close_payloads() -> None:
    assert decode_close(b"") == (1005, "")
    assert decode_close(encode_close(1000, "bye")) == (1000, "bye")
    assert decode_close(encode_close(4999, "é" * 61)) == (4999, "é" * 61)
    assert encode_close(1005, "") == b""
    with pytest.raises(RemoteProtocolError) as info:
        decode_close(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(RemoteProtocolError) as info:
        decode_close(b"\x03\xe8\xff")
    assert info.value.close_code == 1007
    for bad in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
        assert not is_valid_received_close_code(bad)
        with pytest.raises(RemoteProtocolError):
            decode_close(struct.pack("!H", bad))
    for good in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999):
        assert is_valid_received_close_code(good)


def test_encode_close_refuses_bad_input() -> None:
    for bad in (999, 1004, 1006, 1015, 5000):
        with pytest.raises(LocalProtocolError):
            encode_close(bad, "")
    with pytest.raises(LocalProtocolError, match="123"):
        encode_close(1000, "x" * 124)
    with pytest.raises(LocalProtocolError, match="reason"):
        encode_close(1005, "why")
    assert len(encode_close(1000, "x" * 123)) == 125
