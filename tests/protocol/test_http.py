"""Tests for wsskit.protocol.http: incremental HTTP/1.1 head parsing and building."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsskit.exceptions import InvalidHandshake, LocalProtocolError
from wsskit.protocol.headers import Headers
from wsskit.protocol.http import (
    HeadScanner,
    RequestHead,
    ResponseHead,
    build_request,
    build_response,
    parse_request_head,
    parse_response_head,
)
from wsskit.protocol.limits import Limits

LIMITS = Limits()

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8443\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"X-Empty:\r\n"
    b"X-Spaced: \t  padded value \t\r\n"
    b"\r\n"
)

RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def request_with(*lines: bytes, start: bytes = b"GET / HTTP/1.1") -> bytes:
    """A request head with a Host field followed by ``lines``."""
    return b"\r\n".join([start, b"Host: h", *lines]) + b"\r\n\r\n"


def feed_bytewise(data: bytes, limits: Limits = LIMITS) -> tuple[RequestHead, int] | None:
    """Feed ``data`` one byte at a time with one scanner, as a server would."""
    buf = bytearray()
    scanner = HeadScanner(limits)
    result = None
    for i in range(len(data)):
        buf += data[i : i + 1]
        result = parse_request_head(buf, limits, scanner=scanner)
        if result is not None:
            assert i == len(data) - 1 or data[: i + 1].endswith(b"\r\n\r\n")
            return result
    return result


# -- parse_request_head: success -------------------------------------------------------------------


def test_parse_request_head() -> None:
    buf = bytearray(REQUEST + b"\x81\x00frames")
    result = parse_request_head(buf, LIMITS)
    assert result is not None
    head, consumed = result
    assert consumed == len(REQUEST)
    assert buf[consumed:] == b"\x81\x00frames"
    assert head.method == "GET"
    assert head.target == "/chat?room=1"
    assert head.version == "HTTP/1.1"
    assert head.headers.items() == [
        ("Host", "example.com:8443"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("X-Empty", ""),
        ("X-Spaced", "padded value"),
    ]


def test_parse_request_head_accepts_bytes() -> None:
    result = parse_request_head(REQUEST, LIMITS)
    assert result is not None
    assert result[1] == len(REQUEST)


def test_parse_request_head_incomplete_at_every_split() -> None:
    for i in range(len(REQUEST)):
        assert parse_request_head(bytearray(REQUEST[:i]), LIMITS) is None


def test_parse_request_head_one_byte_at_a_time() -> None:
    whole = parse_request_head(REQUEST, LIMITS)
    assert feed_bytewise(REQUEST) == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REQUEST)), max_size=8))
def test_parse_request_head_any_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(REQUEST)]
    buf = bytearray()
    scanner = HeadScanner(LIMITS)
    result = None
    for lo, hi in itertools.pairwise(bounds):
        buf += REQUEST[lo:hi]
        result = parse_request_head(buf, LIMITS, scanner=scanner)
        if hi < len(REQUEST):
            assert result is None
    assert result == parse_request_head(REQUEST, LIMITS)


def test_scanner_remembers_the_end() -> None:
    scanner = HeadScanner(LIMITS)
    buf = bytearray(REQUEST)
    first = parse_request_head(buf, LIMITS, scanner=scanner)
    buf += b"more bytes that do not matter\n"
    assert parse_request_head(buf, LIMITS, scanner=scanner) == first
    assert scanner.scan(buf) == len(REQUEST)


def test_obs_text_in_value_is_latin1() -> None:
    result = parse_request_head(request_with(b"X-Name: caf\xe9 \x80"), LIMITS)
    assert result is not None
    assert result[0].headers["X-Name"] == "caf\xe9 \x80"


def test_http_1_0_is_read_and_needs_no_host() -> None:
    result = parse_request_head(b"OPTIONS / HTTP/1.0\r\n\r\n", LIMITS)
    assert result is not None
    head, end = result
    assert (head.method, head.target, head.version, end) == ("OPTIONS", "/", "HTTP/1.0", 22)
    assert "Host" not in head.headers


@pytest.mark.parametrize(
    ("host", "match"), [(b"Host: a\r\nHost: b\r\n", "more than one"), (b"Host: a b\r\n", "invalid Host")]
)
def test_http_1_0_host_is_checked_when_present(host: bytes, match: str) -> None:
    with pytest.raises(InvalidHandshake, match=match) as info:
        parse_request_head(b"GET / HTTP/1.0\r\n" + host + b"\r\n", LIMITS)
    assert info.value.status == 400


def test_http_1_1_still_needs_host() -> None:
    with pytest.raises(InvalidHandshake, match="missing Host") as info:
        parse_request_head(b"GET / HTTP/1.1\r\n\r\n", LIMITS)
    assert info.value.status == 400


def test_host_forms_accepted() -> None:
    for host in (
        b"example.com",
        b"example.com:8443",
        b"[::1]:9000",
        b"[fe80::1%25eth0]",
        b"127.0.0.1:80",
        b"h:",
    ):
        result = parse_request_head(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", LIMITS)
        assert result is not None
        assert result[0].headers["Host"] == host.decode()


@pytest.mark.parametrize("length", [b"0", b"000", b"0, 0"])
def test_zero_content_length_allowed(length: bytes) -> None:
    assert parse_request_head(request_with(b"Content-Length: " + length), LIMITS) is not None


def test_other_methods_parse() -> None:
    # The parser is plain HTTP; refusing non-GET is the handshake's business (405).
    result = parse_request_head(request_with(start=b"OPTIONS * HTTP/1.1"), LIMITS)
    assert result is not None
    assert (result[0].method, result[0].target) == ("OPTIONS", "*")


# -- parse_request_head: malformed (400 / 505) -----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (b"GET / HTTP/1.1\nHost: h\r\n\r\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400, "bare LF"),
        (b"\nGET / HTTP/1.1\r\n\r\n", 400, "bare LF"),
        (b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "empty line"),
        (b"GET /\r\nHost: h\r\n\r\n", 400, "request line"),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request line"),
        (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "request line"),
        (b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request line"),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "method"),
        (b"G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "method"),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target"),
        (b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target"),
        (b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400, "version"),
        (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400, "version"),
        (b"GET / HTTP/1\r\nHost: h\r\n\r\n", 400, "version"),
        (b"GET / HTTP/11.1\r\nHost: h\r\n\r\n", 400, "version"),
        (b"GET / HTTP/2\r\nHost: h\r\n\r\n", 400, "version"),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "HTTP/1.2"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0"),
        (request_with(b"NoColon"), 400, "without a colon"),
        (request_with(b"Name : value"), 400, "whitespace before the colon"),
        (request_with(b"Name\t: value"), 400, "whitespace before the colon"),
        (request_with(b"Name: value", b" folded"), 400, "folding"),
        (request_with(b"Name: value", b"\tfolded"), 400, "folding"),
        (request_with(b": value"), 400, "header name"),
        (request_with(b"Na(me: value"), 400, "header name"),
        (request_with(b"N\xe4me: value"), 400, "header name"),
        (request_with(b"Name: a\x00b"), 400, "control character"),
        (request_with(b"Name: a\x01b"), 400, "control character"),
        (request_with(b"Name: a\x7fb"), 400, "control character"),
        (request_with(b"Name: a\rb"), 400, "control character"),
        (request_with(b"Name: value\r"), 400, "control character"),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400, "missing Host"),
        (request_with(b"Host: h"), 400, "more than one Host"),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "invalid Host"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400, "invalid Host"),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host"),
        (request_with(b"Transfer-Encoding: chunked"), 400, "Transfer-Encoding"),
        (request_with(b"Content-Length: 5"), 400, "body"),
        (request_with(b"Content-Length: 0, 1"), 400, "body"),
        (request_with(b"Content-Length: five"), 400, "invalid Content-Length"),
        (request_with(b"Content-Length: -0"), 400, "invalid Content-Length"),
        (request_with(b"Content-Length:"), 400, "invalid Content-Length"),
    ],
)
def test_parse_request_head_malformed(data: bytes, status: int, match: str) -> None:
    with pytest.raises(InvalidHandshake, match=match) as info:
        parse_request_head(bytearray(data), LIMITS)
    assert info.value.status == status


def test_bare_lf_detected_before_the_head_ends() -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_request_head(bytearray(b"GET / HTTP/1.1\n"), LIMITS)
    assert info.value.status == 400


# -- limits ----------------------------------------------------------------------------------------


def test_request_line_at_the_limit() -> None:
    line = b"GET /" + b"a" * 15 + b" HTTP/1.1"  # 29 bytes
    limits = Limits(max_request_line=len(line))
    assert parse_request_head(line + b"\r\nHost: h\r\n\r\n", limits) is not None
    # The CR of the coming CRLF does not count against the limit.
    assert parse_request_head(line + b"\r", limits) is None
    assert feed_bytewise(line + b"\r\nHost: h\r\n\r\n", limits) is not None


def test_request_line_too_long() -> None:
    line = b"GET /" + b"a" * 16 + b" HTTP/1.1"
    limits = Limits(max_request_line=len(line) - 1)
    with pytest.raises(InvalidHandshake, match="start line too long") as info:
        parse_request_head(line + b"\r\nHost: h\r\n\r\n", limits)
    assert info.value.status == 414


def test_request_line_too_long_detected_early() -> None:
    limits = Limits(max_request_line=20)
    buf = bytearray()
    scanner = HeadScanner(limits)
    data = b"GET /" + b"a" * 100
    for i, byte in enumerate(data):
        buf.append(byte)
        if len(buf) <= 20:
            assert parse_request_head(buf, limits, scanner=scanner) is None
        else:
            with pytest.raises(InvalidHandshake) as info:
                parse_request_head(buf, limits, scanner=scanner)
            assert info.value.status == 414
            assert i == 20
            break
    else:
        pytest.fail("the long request line was not detected")


def test_request_line_partial_cr_inside_limit() -> None:
    limits = Limits(max_request_line=20)
    # 21 bytes, but the last is a CR that may start the CRLF: still within the limit.
    assert parse_request_head(bytearray(b"G" * 20 + b"\r"), limits) is None
    with pytest.raises(InvalidHandshake):
        parse_request_head(bytearray(b"G" * 21 + b"\r"), limits)


def test_header_line_at_the_limit() -> None:
    field = b"X-Long: " + b"v" * 20
    limits = Limits(max_header_line=len(field))
    assert parse_request_head(request_with(field), limits) is not None
    assert feed_bytewise(request_with(field), limits) is not None


def test_header_line_too_long() -> None:
    field = b"X-Long: " + b"v" * 20
    limits = Limits(max_header_line=len(field) - 1)
    with pytest.raises(InvalidHandshake, match="header line too long") as info:
        parse_request_head(request_with(field), limits)
    assert info.value.status == 431


def test_header_line_too_long_detected_early() -> None:
    limits = Limits(max_header_line=30)
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 1000
    buf = bytearray()
    scanner = HeadScanner(limits)
    with pytest.raises(InvalidHandshake) as info:
        for byte in data:
            buf.append(byte)
            parse_request_head(buf, limits, scanner=scanner)
    assert info.value.status == 431
    # Raised as the 31st byte of the field line arrived, not at the end.
    assert len(buf) == len(b"GET / HTTP/1.1\r\nHost: h\r\n") + 31


def test_long_line_in_the_middle_of_one_chunk() -> None:
    limits = Limits(max_header_line=30)
    data = request_with(b"X-Long: " + b"v" * 40, b"X-Short: v")
    with pytest.raises(InvalidHandshake) as info:
        parse_request_head(bytearray(data[:-2]), limits)  # no blank line yet
    assert info.value.status == 431


def test_max_headers_exactly() -> None:
    fields = [b"X-%d: v" % i for i in range(4)]  # plus Host: 5 fields
    limits = Limits(max_headers=5)
    assert parse_request_head(request_with(*fields), limits) is not None
    assert feed_bytewise(request_with(*fields), limits) is not None


def test_too_many_headers() -> None:
    fields = [b"X-%d: v" % i for i in range(5)]  # plus Host: 6 fields
    limits = Limits(max_headers=5)
    with pytest.raises(InvalidHandshake, match="too many header fields") as info:
        parse_request_head(request_with(*fields), limits)
    assert info.value.status == 431


def test_too_many_headers_detected_early() -> None:
    limits = Limits(max_headers=2)
    prefix = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n"
    scanner = HeadScanner(limits)
    buf = bytearray(prefix)
    assert parse_request_head(buf, limits, scanner=scanner) is None
    buf += b"\r"  # may be the blank line
    assert parse_request_head(buf, limits, scanner=scanner) is None
    buf[-1:] = b"B"  # a third field begins: refused before its line ends
    with pytest.raises(InvalidHandshake) as info:
        parse_request_head(buf, limits, scanner=HeadScanner(limits))
    assert info.value.status == 431


def test_zero_max_headers() -> None:
    limits = Limits(max_headers=0)
    with pytest.raises(InvalidHandshake) as info:
        parse_request_head(bytearray(b"GET / HTTP/1.1\r\nH"), limits)
    assert info.value.status == 431


# -- parse_response_head ---------------------------------------------------------------------------


def test_parse_response_head() -> None:
    buf = bytearray(RESPONSE + b"\x81\x02hi")
    result = parse_response_head(buf, LIMITS)
    assert result is not None
    head, consumed = result
    assert head == ResponseHead(
        "HTTP/1.1", 101, "Switching Protocols", Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")])
    )
    assert consumed == len(RESPONSE)


def test_parse_response_head_incomplete_at_every_split() -> None:
    for i in range(len(RESPONSE)):
        assert parse_response_head(bytearray(RESPONSE[:i]), LIMITS) is None


def test_parse_response_head_bytewise_with_scanner() -> None:
    scanner = HeadScanner(LIMITS, request=False)
    buf = bytearray()
    results = []
    for byte in RESPONSE:
        buf.append(byte)
        results.append(parse_response_head(buf, LIMITS, scanner=scanner))
    assert results[:-1] == [None] * (len(RESPONSE) - 1)
    assert results[-1] == parse_response_head(RESPONSE, LIMITS)


@pytest.mark.parametrize(
    ("line", "version", "status", "reason"),
    [
        (b"HTTP/1.1 101", "HTTP/1.1", 101, ""),
        (b"HTTP/1.1 404 ", "HTTP/1.1", 404, ""),
        (b"HTTP/1.0 403 Forbidden", "HTTP/1.0", 403, "Forbidden"),
        (b"HTTP/1.1 599 Odd\tbut fine \xe9", "HTTP/1.1", 599, "Odd\tbut fine \xe9"),
        (b"HTTP/1.1 100 Continue", "HTTP/1.1", 100, "Continue"),
    ],
)
def test_status_lines(line: bytes, version: str, status: int, reason: str) -> None:
    result = parse_response_head(line + b"\r\n\r\n", LIMITS)
    assert result is not None
    assert (result[0].version, result[0].status, result[0].reason) == (version, status, reason)
    assert len(result[0].headers) == 0


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"HTTP/1.1\r\n\r\n", "status line"),
        (b"HTTP/2 200 OK\r\n\r\n", "version"),
        (b"HTTP/1.1  200 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 099 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 600 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 200 O\x00K\r\n\r\n", "reason"),
        (b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n", "header name"),
        (b"HTTP/1.1 200 OK\r\nName: \x1b[31m\r\n\r\n", "control character"),
        (b"HTTP/1.1 200 OK\nName: v\r\n\r\n", "bare LF"),
        (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "empty line"),
    ],
)
def test_parse_response_head_malformed(data: bytes, match: str) -> None:
    with pytest.raises(InvalidHandshake, match=match):
        parse_response_head(bytearray(data), LIMITS)


def test_response_needs_no_host_and_may_have_a_body() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi"
    result = parse_response_head(data, LIMITS)
    assert result is not None
    assert result[1] == len(data) - 2


def test_response_limits() -> None:
    limits = Limits(max_request_line=12, max_header_line=10, max_headers=1)
    with pytest.raises(InvalidHandshake, match="start line too long"):
        parse_response_head(bytearray(b"HTTP/1.1 200 OK\r\n"), limits)
    with pytest.raises(InvalidHandshake, match="header line too long") as info:
        parse_response_head(bytearray(b"HTTP/1.1 200\r\nA: 12345678"), limits)
    assert info.value.status == 431
    with pytest.raises(InvalidHandshake, match="too many"):
        parse_response_head(bytearray(b"HTTP/1.1 200\r\nA: 1\r\nB"), limits)


# -- build_request ---------------------------------------------------------------------------------


def test_build_request() -> None:
    headers = Headers([("Host", "example.com"), ("X-Latin", "caf\xe9"), ("X-Empty", "")])
    assert build_request("GET", "/a?b=c", headers) == (
        b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Latin: caf\xe9\r\nX-Empty: \r\n\r\n"
    )


def test_build_request_round_trip() -> None:
    headers = Headers([("Host", "[::1]:9000"), ("Upgrade", "websocket"), ("X-Tab", "a\tb")])
    data = build_request("GET", "/", headers)
    result = parse_request_head(data, LIMITS)
    assert result == (RequestHead("GET", "/", "HTTP/1.1", headers), len(data))


@pytest.mark.parametrize(
    ("method", "target", "headers", "match"),
    [
        ("GE T", "/", [], "method"),
        ("", "/", [], "method"),
        ("GET", "/a b", [], "target"),
        ("GET", "", [], "target"),
        ("GET", "/\xe9", [], "target"),
        ("GET", "/", [("Bad Name", "v")], "header name"),
        ("GET", "/", [("", "v")], "header name"),
        ("GET", "/", [("X", "a\r\nInjected: yes")], "invalid character"),
        ("GET", "/", [("X", "a\nb")], "invalid character"),
        ("GET", "/", [("X", "a\x00b")], "invalid character"),
        ("GET", "/", [("X", "\u20ac")], "invalid character"),
    ],
)
def test_build_request_refuses(method: str, target: str, headers: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        build_request(method, target, Headers(headers))


# -- build_response --------------------------------------------------------------------------------


def test_build_response_101() -> None:
    headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert build_response(101, headers) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )


def test_build_response_with_body() -> None:
    data = build_response(403, Headers([("Content-Type", "text/plain")]), b"no\n")
    assert data == b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nno\n"


def test_build_response_empty_body_gets_content_length() -> None:
    assert build_response(200, Headers()) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_build_response_reason() -> None:
    assert build_response(200, Headers(), reason="Fine").startswith(b"HTTP/1.1 200 Fine\r\n")
    # RFC 9112 §4: an unregistered status keeps the SP before an empty reason.
    assert build_response(499, Headers()).startswith(b"HTTP/1.1 499 \r\n")


def test_build_response_keeps_a_matching_content_length() -> None:
    data = build_response(200, Headers([("Content-Length", "2")]), b"ok")
    assert data == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_build_response_no_content_statuses() -> None:
    assert build_response(204, Headers()) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert build_response(304, Headers([("Content-Length", "10")])) == (
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
    )
    assert build_response(100, Headers()) == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    ("status", "headers", "body", "reason", "match"),
    [
        (99, [], b"", None, "status"),
        (600, [], b"", None, "status"),
        (True, [], b"", None, "status"),
        (101, [], b"x", None, "cannot have a body"),
        (204, [], b"x", None, "cannot have a body"),
        (304, [], b"x", None, "cannot have a body"),
        (101, [("Content-Length", "0")], b"", None, "cannot have Content-Length"),
        (204, [("Content-Length", "0")], b"", None, "cannot have Content-Length"),
        (200, [("Content-Length", "3")], b"ok", None, "does not match"),
        (200, [("Content-Length", "2"), ("Content-Length", "2")], b"ok", None, "does not match"),
        (200, [("Transfer-Encoding", "chunked")], b"ok", None, "Transfer-Encoding"),
        (200, [], b"", "O\r\nK", "reason"),
        (200, [], b"", "\u2713", "reason"),
        (200, [("X", "a\rb")], b"", None, "invalid character"),
    ],
)
def test_build_response_refuses(
    status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None, match: str
) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        build_response(status, Headers(headers), body, reason)


def test_build_response_round_trip() -> None:
    data = build_response(503, Headers([("Retry-After", "5")]), b"busy")
    result = parse_response_head(data, LIMITS)
    assert result is not None
    head, consumed = result
    assert (head.status, head.reason) == (503, "Service Unavailable")
    assert head.headers.items() == [("Retry-After", "5"), ("Content-Length", "4")]
    assert data[consumed:] == b"busy"


def test_build_response_does_not_mutate_headers() -> None:
    headers = Headers([("X", "1")])
    build_response(200, headers, b"body")
    assert headers.items() == [("X", "1")]


def test_head_size_limit_is_exact() -> None:
    head = request_with(b"X-Pad: " + b"a" * 100)
    limits = Limits(max_head_size=len(head))
    assert parse_request_head(head, limits) is not None
    assert feed_bytewise(head, limits) is not None
    with pytest.raises(InvalidHandshake, match="header section too large") as info:
        parse_request_head(head, Limits(max_head_size=len(head) - 1))
    assert info.value.status == 431


def test_head_size_limit_refuses_before_the_blank_line() -> None:
    # 100 fields of 1000 bytes are each within the line and field limits;
    # together they pass 64 KiB, refused as soon as the bytes show it.
    limits = Limits()
    scanner = HeadScanner(limits)
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n")
    with pytest.raises(InvalidHandshake, match="header section too large") as info:
        for i in range(100):
            buf += b"X-%03d: " % i + b"v" * 990 + b"\r\n"
            assert parse_request_head(buf, limits, scanner=scanner) is None
    assert info.value.status == 431
    assert len(buf) <= limits.max_head_size + 1000


def test_head_size_limit_on_a_response_is_a_plain_error() -> None:
    limits = Limits(max_head_size=64)
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    with pytest.raises(InvalidHandshake, match="header section too large") as info:
        parse_response_head(response, limits)
    assert info.value.status == 400


# -- parse_request_head: the small body of a plain POST ---------------------------------------------


def post_with(*lines: bytes) -> bytes:
    return request_with(*lines, start=b"POST /api/publish HTTP/1.1")


@pytest.mark.parametrize(("length", "expected"), [(b"5", 5), (b"0", 0), (b"007", 7), (b"65536", 65536)])
def test_post_body_length_is_reported(length: bytes, expected: int) -> None:
    data = post_with(b"Content-Length: " + length)
    result = parse_request_head(data + b"x" * expected, LIMITS)
    assert result is not None
    head, end = result
    assert (head.method, head.content_length) == ("POST", expected)
    assert end == len(data)  # the head only: the body is the caller's to read


def test_get_head_has_no_body_length() -> None:
    result = parse_request_head(request_with(b"Content-Length: 0"), LIMITS)
    assert result is not None and result[0].content_length == 0


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (post_with(), 411, "without Content-Length"),
        (post_with(b"Content-Length: 65537"), 413, "larger than 65536"),
        (post_with(b"Content-Length: " + b"9" * 40), 413, "larger than"),
        (post_with(b"Transfer-Encoding: chunked"), 400, "Transfer-Encoding"),
        (post_with(b"Content-Length: 3", b"Transfer-Encoding: chunked"), 400, "Transfer-Encoding"),
        (post_with(b"Content-Length: 3", b"Content-Length: 3"), 400, "more than one"),
        (post_with(b"Content-Length: 3, 3"), 400, "more than one"),
        (post_with(b"Content-Length: +3"), 400, "invalid Content-Length"),
        (post_with(b"Content-Length: 0x10"), 400, "invalid Content-Length"),
        (post_with(b"Content-Length: 3", b"Upgrade: websocket"), 400, "body"),
        (request_with(b"Content-Length: 3", start=b"PUT / HTTP/1.1"), 400, "body"),
        (request_with(b"Content-Length: 3", start=b"DELETE / HTTP/1.1"), 400, "body"),
    ],
)
def test_post_body_refusals(data: bytes, status: int, match: str) -> None:
    with pytest.raises(InvalidHandshake, match=match) as info:
        parse_request_head(data, LIMITS)
    assert info.value.status == status


def test_request_body_limit_is_configurable() -> None:
    limits = Limits(max_request_body=10)
    assert parse_request_head(post_with(b"Content-Length: 10"), limits) is not None
    with pytest.raises(InvalidHandshake) as info:
        parse_request_head(post_with(b"Content-Length: 11"), limits)
    assert info.value.status == 413


def test_post_with_upgrade_and_no_length_is_left_to_the_handshake() -> None:
    # A POST that asks for an upgrade is a wrong upgrade (405 later), not a missing length.
    result = parse_request_head(post_with(b"Upgrade: websocket"), LIMITS)
    assert result is not None and result[0].content_length == 0
