"""The PROXY protocol header parser (versions 1 and 2), fed in every split."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsskit.protocol.proxy_header import (
    DEFAULT_MAX_SIZE,
    V1_MAX_SIZE,
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxyHeader,
    ProxyHeaderParser,
)

AFTER = b"GET / HTTP/1.1\r\n"


def v2(
    command: int = 1,
    family: int = 1,
    transport: int = 1,
    addresses: bytes | None = None,
    tlvs: bytes = b"",
    *,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    """A version 2 header built field by field (so tests can break any one)."""
    if addresses is None:
        addresses = {
            0: b"",
            1: ipaddress.IPv4Address("203.0.113.7").packed
            + ipaddress.IPv4Address("10.0.0.2").packed
            + struct.pack("!HH", 51234, 443),
            2: ipaddress.IPv6Address("2001:db8::7").packed
            + ipaddress.IPv6Address("2001:db8::2").packed
            + struct.pack("!HH", 40000, 8443),
            3: b"/tmp/client".ljust(108, b"\0") + b"/tmp/server".ljust(108, b"\0"),
        }.get(family, b"")
    block = addresses + tlvs
    size = len(block) if length is None else length
    return (
        V2_SIGNATURE
        + bytes([version << 4 | command, family << 4 | transport])
        + struct.pack("!H", size)
        + block
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def parse_whole(data: bytes, **options: object) -> tuple[ProxyHeader | None, ProxyHeaderParser]:
    parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
    return parser.receive_data(data), parser


def parse_in_pieces(data: bytes, cuts: list[int], **options: object) -> tuple[ProxyHeader, bytes]:
    """Feed ``data`` cut at ``cuts``; the header must come with the piece that completes it."""
    parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
    last = 0
    rest = b""
    header = None
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[last:cut]
        last = cut
        if header is None:
            header = parser.receive_data(piece)
            if header is not None:
                rest = parser.rest
        else:
            rest += piece  # the application's bytes after the header
    assert header is not None
    return header, rest


VALID = [
    (
        b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 443\r\n",
        ProxyHeader(1, "PROXY", ("203.0.113.7", 51234), ("10.0.0.2", 443), 43),
    ),
    (
        b"PROXY TCP6 2001:db8:0::7 2001:db8::2 40000 8443\r\n",
        ProxyHeader(1, "PROXY", ("2001:db8::7", 40000), ("2001:db8::2", 8443), 49),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, "PROXY", None, None, 15)),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, "PROXY", None, None, 35)),
    (v2(), ProxyHeader(2, "PROXY", ("203.0.113.7", 51234), ("10.0.0.2", 443), 28)),
    (v2(family=2), ProxyHeader(2, "PROXY", ("2001:db8::7", 40000), ("2001:db8::2", 8443), 52)),
    (v2(command=0, family=0, transport=0), ProxyHeader(2, "LOCAL", None, None, 16)),
    # LOCAL ignores the block, family included.
    (v2(command=0, family=1), ProxyHeader(2, "LOCAL", None, None, 28)),
    (v2(family=0, transport=0, addresses=b"ignored"), ProxyHeader(2, "PROXY", None, None, 23)),
    (v2(family=3), ProxyHeader(2, "PROXY", None, None, 16 + 216)),
    (
        v2(tlvs=tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0x05, b"unique-id")),
        ProxyHeader(2, "PROXY", ("203.0.113.7", 51234), ("10.0.0.2", 443), 28 + 5 + 3 + 12),
    ),
]


@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid_headers_in_one_piece(data: bytes, expected: ProxyHeader) -> None:
    header, parser = parse_whole(data + AFTER)
    assert header == expected
    assert header.size == len(data)
    assert parser.rest == AFTER


@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid_headers_in_every_split(data: bytes, expected: ProxyHeader) -> None:
    wire = data + AFTER
    for cut in range(len(wire) + 1):
        assert parse_in_pieces(wire, [cut]) == (expected, AFTER)
    # One byte at a time: nothing is decided before the last byte.
    parser = ProxyHeaderParser()
    for index, byte in enumerate(data):
        header = parser.receive_data(bytes([byte]))
        assert (header is not None) == (index == len(data) - 1)
    assert parser.header == expected
    assert parser.rest == b""


@given(st.sampled_from(VALID), st.lists(st.integers(0, 200), max_size=6), st.binary(max_size=50))
def test_valid_headers_in_random_splits(
    case: tuple[bytes, ProxyHeader], cuts: list[int], after: bytes
) -> None:
    data, expected = case
    wire = data + after
    assert parse_in_pieces(wire, [cut for cut in cuts if cut <= len(wire)]) == (expected, after)


@given(
    st.ip_addresses(v=4),
    st.ip_addresses(v=4),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.booleans(),
    st.lists(st.integers(1, 120), max_size=4),
)
def test_ipv4_round_trip(
    source: ipaddress.IPv4Address,
    destination: ipaddress.IPv4Address,
    sport: int,
    dport: int,
    binary: bool,
    cuts: list[int],
) -> None:
    if binary:
        data = v2(addresses=source.packed + destination.packed + struct.pack("!HH", sport, dport))
    else:
        data = f"PROXY TCP4 {source} {destination} {sport} {dport}\r\n".encode()
    header, rest = parse_in_pieces(data + AFTER, cuts)
    assert header.source == (str(source), sport)
    assert header.destination == (str(destination), dport)
    assert rest == AFTER


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 65535), st.booleans())
def test_ipv6_round_trip(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, port: int, binary: bool
) -> None:
    if binary:
        data = v2(family=2, addresses=source.packed + destination.packed + struct.pack("!HH", port, 1))
    else:
        data = f"PROXY TCP6 {source.exploded} {destination} {port} 1\r\n".encode()
    header, _ = parse_whole(data)
    assert header is not None
    assert header.source == (str(source), port)
    assert header.destination == (str(destination), 1)


MALFORMED_V1 = [
    (b"GET / HTTP/1.1\r\n\r\n", "does not start with a PROXY"),
    (b"\x16\x03\x01\x02\x00", "does not start with a PROXY"),  # a TLS ClientHello
    (b"PROXI TCP4", "start like a PROXY version 1"),
    (b"proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n", "does not start with a PROXY"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", "not ended by CRLF"),
    (b"PROXY TCP4 1.2.3.4\r1.2.3.5 1 2\r\n", "not ended by CRLF"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "six"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n", "six"),
    (b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n", "six"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 \r\n", "six"),
    (b"PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP4 1.2.3.256 1.2.3.5 1 2\r\n", "invalid IPv4"),
    (b"PROXY TCP4 01.2.3.4 1.2.3.5 1 2\r\n", "invalid IPv4"),
    (b"PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "invalid IPv4"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid IPv6"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "zone"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "out of range"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 080 2\r\n", "invalid port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 +80 2\r\n", "invalid port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", "invalid port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 \xd9\xa1 2\r\n", "non-ASCII"),
    (b"PROXY TCP6 " + b"1" * 120 + b"\r\n", "longer than 107"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED_V1)
def test_malformed_v1(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidProxyHeader, match=reason):
        parse_whole(data)


@pytest.mark.parametrize(("data", "reason"), MALFORMED_V1)
def test_malformed_v1_byte_by_byte_is_refused_by_the_end(data: bytes, reason: str) -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(InvalidProxyHeader, match=reason):
        for byte in data:
            parser.receive_data(bytes([byte]))


def test_v1_at_its_length_limit() -> None:
    # The longest valid line is 107 bytes with the CRLF; one more is refused.
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX_SIZE - 16) + b"\r\n"
    assert len(longest) == V1_MAX_SIZE
    header, _ = parse_whole(longest)
    assert header == ProxyHeader(1, "PROXY", None, None, V1_MAX_SIZE)
    with pytest.raises(InvalidProxyHeader, match="longer than 107"):
        parse_whole(b"PROXY UNKNOWN " + b"x" * (V1_MAX_SIZE - 15) + b"\r\n")


def test_v1_refused_without_waiting_for_more() -> None:
    # A connection that is not a PROXY header is refused on its first bytes.
    with pytest.raises(InvalidProxyHeader):
        ProxyHeaderParser().receive_data(b"G")
    with pytest.raises(InvalidProxyHeader):
        ProxyHeaderParser().receive_data(b"PROXX")


MALFORMED_V2 = [
    (v2(version=1), "version nibble 1"),
    (v2(version=3), "version nibble 3"),
    (v2(command=2), "unknown command 2"),
    (v2(family=4), "unknown address family 4"),
    (v2(transport=2), "datagram"),
    (v2(transport=3), "unknown transport protocol 3"),
    (v2(transport=0), "unknown transport protocol 0"),
    (v2(family=0, transport=1), "UNSPEC family with transport 1"),
    (v2(addresses=b"\x01" * 11), "12 needed"),
    (v2(family=2, addresses=b"\x01" * 35), "36 needed"),
    (v2(family=3, addresses=b"\x01" * 215), "216 needed"),
    (v2(tlvs=b"\x01\x00"), "TLV cut short"),
    (v2(tlvs=tlv(1, b"h2")[:-1]), "TLV longer"),
    (v2(tlvs=tlv(1, b"h2") + b"\x05\x00\x09abc"), "TLV longer"),
    (b"\r\n\r\n\x00\r\nQUIX\n", "start like a PROXY version 2"),
    (b"\r\n\r\nGET", "start like a PROXY version 2"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED_V2)
def test_malformed_v2(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidProxyHeader, match=reason):
        parse_whole(data + AFTER)
    parser = ProxyHeaderParser()
    with pytest.raises(InvalidProxyHeader, match=reason):
        for byte in data:
            parser.receive_data(bytes([byte]))


def test_v2_length_bound() -> None:
    # The announced length alone decides: refused before the bytes arrive.
    header = v2(tlvs=tlv(0xE0, b"x" * (DEFAULT_MAX_SIZE - 16 - 12 - 3)))
    assert len(header) == DEFAULT_MAX_SIZE
    assert parse_whole(header)[0] is not None
    too_long = v2(tlvs=tlv(0xE0, b"x" * (DEFAULT_MAX_SIZE - 16 - 12 - 2)))
    with pytest.raises(InvalidProxyHeader, match="over the limit of 4096"):
        ProxyHeaderParser().receive_data(too_long[:16])
    with pytest.raises(InvalidProxyHeader, match="65551 bytes"):
        ProxyHeaderParser().receive_data(v2(length=65535)[:16])
    small = ProxyHeaderParser(max_size=100)
    with pytest.raises(InvalidProxyHeader, match="over the limit of 100"):
        small.receive_data(v2(family=3))


def test_versions_can_be_restricted() -> None:
    with pytest.raises(InvalidProxyHeader, match="version 1 header, which is not accepted"):
        ProxyHeaderParser(versions=(2,)).receive_data(b"PROXY UNKNOWN\r\n")
    with pytest.raises(InvalidProxyHeader, match="version 2 header, which is not accepted"):
        ProxyHeaderParser(versions=(1,)).receive_data(v2())
    assert ProxyHeaderParser(versions=(2,)).receive_data(v2()) is not None
    assert ProxyHeaderParser(versions=(1,)).receive_data(b"PROXY UNKNOWN\r\n") is not None


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="versions"):
        ProxyHeaderParser(versions=())
    with pytest.raises(ValueError, match="versions"):
        ProxyHeaderParser(versions=(3,))
    with pytest.raises(ValueError, match="max_size"):
        ProxyHeaderParser(max_size=20)


def test_no_feeding_after_the_header() -> None:
    parser = ProxyHeaderParser()
    assert parser.receive_data(b"PROXY UNKNOWN\r\nrest") is not None
    assert parser.rest == b"rest"
    with pytest.raises(RuntimeError):
        parser.receive_data(b"more")


def test_bytes_held_before_a_decision_are_bounded() -> None:
    # However slowly the bytes come, no parser waits past the bound: a v1
    # line without CRLF is refused by its 107th byte.
    parser = ProxyHeaderParser()
    fed = 0
    with pytest.raises(InvalidProxyHeader, match="longer than 107"):
        for byte in b"PROXY " + b"x" * 500:
            fed += 1
            parser.receive_data(bytes([byte]))
    assert fed == V1_MAX_SIZE
