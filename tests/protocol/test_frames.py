"""Frame encoding and strict parsing (RFC 6455 §5), fed in every split."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.exceptions import LocalProtocolError, PayloadTooBig, RemoteProtocolError
from wsskit.protocol import frames
from wsskit.protocol.frames import (
    FrameParser,
    Opcode,
    RawFrame,
    decode_close,
    encode_close,
    encode_frame,
    is_valid_received_close_code,
)

# Every test runs through both twins (C and pure Python): see conftest.py.
pytestmark = pytest.mark.usefixtures("implementation")


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


# -- parse_frames: the one-call parser both twins implement ----------------------


def _parse(
    data: bytes | bytearray | memoryview, start: int = 0, *, masked: bool = False, **kw: object
) -> tuple:
    # Through the module attribute, so the twin under test is the one called.
    return frames.parse_frames(data, start, masked, kw.get("rsv1", False), kw.get("limit"))


def test_parse_frames_returns_pairs_and_the_end() -> None:
    wire = bytes.fromhex("810548656c6c6f") + bytes.fromhex("8203") + b"abc" + b"\x82"
    assert _parse(wire) == ([(0x81, b"Hello"), (0x82, b"abc")], len(wire) - 1, None)
    # From an offset, and from any bytes-like object.
    assert _parse(bytearray(wire), 7) == ([(0x82, b"abc")], len(wire) - 1, None)
    assert _parse(memoryview(wire)[7:]) == ([(0x82, b"abc")], 5, None)


def test_parse_frames_unmasks_into_bytes() -> None:
    wire = bytes.fromhex("818537fa213d7f9f4d5158")
    found, end, error = _parse(wire, masked=True)
    assert found == [(0x81, b"Hello")] and end == len(wire) and error is None
    assert type(found[0][1]) is bytes


@pytest.mark.parametrize(
    ("stop_after", "first"),
    [
        (b"\x01\x01a", 0x01),  # a first fragment: the next frame has the message's budget
        (b"\x80\x01a", 0x80),  # a continuation
        (b"\x88\x00", 0x88),  # a Close: nothing after it counts
        (b"\xc1\x01a", 0xC1),  # a compressed fragment is final here, parsing goes on (below)
    ],
)
def test_parse_frames_stops_where_limits_may_change(stop_after: bytes, first: int) -> None:
    wire = stop_after + b"\x82\x01b"
    found, end, error = _parse(wire, rsv1=True)
    if first == 0xC1:
        # FIN set: a whole compressed message changes no limit.
        assert found == [(0xC1, b"a"), (0x82, b"b")] and end == len(wire)
    else:
        assert found == [(first, stop_after[2:])] and end == len(stop_after)
    assert error is None


def test_parse_frames_goes_on_after_pings_and_pongs() -> None:
    wire = b"\x89\x01p" + b"\x8a\x00" + b"\x82\x01b"
    assert _parse(wire) == ([(0x89, b"p"), (0x8A, b""), (0x82, b"b")], len(wire), None)


def test_parse_frames_reports_a_violation_after_the_frames_before_it() -> None:
    wire = b"\x82\x01a" + b"\x83\x00"
    assert _parse(wire) == ([(0x82, b"a")], 3, (1002, "reserved opcode 0x3"))
    assert _parse(b"\x82\x7e\x03\xe9", limit=1000) == (
        [],
        0,
        (1009, "frame of 1001 bytes exceeds the limit of 1000"),
    )
    # The compressed allowance: 1000 + (1000 >> 5) + (1000 >> 7) + (1000 >> 11) + 64 = 1102.
    assert _parse(b"\xc2\x7e\x04\x4f", rsv1=True, limit=1000)[2] == (
        1009,
        "frame of 1103 bytes exceeds the limit of 1000",
    )
    assert _parse(b"\xc2\x7e\x04\x4e", rsv1=True, limit=1000) == ([], 0, None)


def test_parse_frames_limits() -> None:
    assert _parse(b"\x82\x00", limit=0) == ([(0x82, b"")], 2, None)
    assert _parse(b"\x82\x01a", limit=0)[2] == (1009, "frame of 1 bytes exceeds the limit of 0")
    huge = b"\x82\x7f" + struct.pack("!Q", 2**62)
    assert _parse(huge, limit=2**70) == ([], 0, None)  # a limit beyond 64 bits allows anything
    assert _parse(huge, limit=None) == ([], 0, None)


def test_parse_frames_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="negative"):
        _parse(b"\x82\x00", limit=-1)
    for start in (-1, 3):
        with pytest.raises(ValueError, match="outside"):
            _parse(b"\x82\x00", start)
    with pytest.raises(TypeError):
        frames.parse_frames("text", 0, False, False, None)  # type: ignore[arg-type]


def test_parse_frames_leaves_the_buffer_resizable() -> None:
    # No view of the buffer outlives the call (the core deletes what it parsed).
    buf = bytearray(b"\x82\x01a\x82")
    _parse(buf)
    del buf[:3]
    buf += b"\x00"
    assert _parse(buf) == ([(0x82, b"")], 2, None)


@given(st.binary(max_size=64), st.booleans(), st.booleans(), st.sampled_from([None, 0, 5, 125, 1000]))
def test_parse_frames_twins_agree_on_any_input(
    data: bytes, masked: bool, rsv1: bool, limit: int | None
) -> None:
    expected = frames.parse_frames_py(data, 0, masked, rsv1, limit)
    assert frames.parse_frames(data, 0, masked, rsv1, limit) == expected


@given(st.lists(frame_strategy, min_size=1, max_size=4), st.booleans(), st.integers(0, 12))
def test_parse_frames_twins_agree_on_frames_cut_anywhere(
    cases: list[tuple[int, bytes, bool]], masked: bool, cut: int
) -> None:
    wire = b"".join(_wire(*encode_frame(op, payload, fin=fin, mask=masked)) for op, payload, fin in cases)
    wire = wire[: max(0, len(wire) - cut)]
    for start in (0, 1):
        expected = frames.parse_frames_py(wire, min(start, len(wire)), masked, True, 2**20)
        assert frames.parse_frames(wire, min(start, len(wire)), masked, True, 2**20) == expected


def test_mask_keys_are_fresh_and_four_bytes() -> None:
    # More than one batch of keys: no key comes twice (a collision among
    # 1,000 random 32-bit keys has a chance of about 1 in 10,000).
    keys = [frames.mask_key() for _ in range(1000)]
    assert all(type(key) is bytes and len(key) == 4 for key in keys)
    assert len(set(keys)) >= 999


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_reuse_its_parents_keys() -> None:
    frames.mask_key()  # the parent holds a batch of keys now
    upcoming = list(frames._keys)
    assert upcoming
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and leave at once
        os.write(write, frames.mask_key())
        os._exit(0)
    os.close(write)
    child_key = os.read(read, 4)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_key) == 4 and child_key not in upcoming
