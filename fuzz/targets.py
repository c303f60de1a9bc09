"""Fuzz targets for wsskit's sans-I/O protocol core.

Every target takes one ``bytes`` input, drives a parser (or a whole
connection core) with it and asserts the invariants its docstring lists. Any
exception escaping a target is a finding: an :class:`AssertionError` names a
broken invariant, anything else is an error the code under test does not
document.

Some targets read their first bytes as settings (chunk size, options); the seed
corpus written by ``fuzz/seeds.py`` uses the same layout, and fuzz/README.md
describes it.

The memory checks of the connection targets read private attributes of the
core (its receive buffers): nothing public says how many bytes a connection
holds.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from wsskit.exceptions import (
    HandshakeError,
    InvalidHandshake,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    RemoteProtocolError,
)
from wsskit.protocol.connection import ClientConnection, Connection, ServerConnection
from wsskit.protocol.deflate import DeflateOptions, PerMessageDeflate, accept_response
from wsskit.protocol.events import (
    Accept,
    BytesMessage,
    Close,
    Event,
    Ping,
    Pong,
    Reject,
    Request,
    TextMessage,
)
from wsskit.protocol.frames import (
    MAX_CONTROL_PAYLOAD,
    FrameParser,
    RawFrame,
    compressed_limit,
    decode_close,
    encode_frame,
    is_valid_received_close_code,
)
from wsskit.protocol.handshake import ClientHandshake, ServerHandshake, accept_key, error_reject
from wsskit.protocol.headers import parse_extensions
from wsskit.protocol.http import (
    HeadScanner,
    RequestHead,
    ResponseHead,
    build_request,
    parse_request_head,
    parse_response_head,
)
from wsskit.protocol.limits import Limits
from wsskit.protocol.mask import apply_mask
from wsskit.protocol.proxy_header import DEFAULT_MAX_SIZE as PROXY_MAX_SIZE
from wsskit.protocol.proxy_header import InvalidProxyHeader, ProxyHeaderParser
from wsskit.protocol.state import State

__all__ = [
    "TARGETS",
    "FUZZ_KEY",
    "HTTP_LIMITS",
    "CORE_LIMITS",
    "http_request",
    "http_response",
    "server_handshake",
    "client_handshake",
    "frames",
    "frame_roundtrip",
    "inflate",
    "deflate_roundtrip",
    "server_connection",
    "client_connection",
    "proxy_header",
]

# Small limits, so that inputs of a few KiB reach every limit check.
HTTP_LIMITS = Limits(max_request_line=160, max_header_line=160, max_headers=10, max_handshake_body=512)
CORE_LIMITS = Limits(
    max_message_size=4096,
    max_fragments=16,
    max_request_line=256,
    max_header_line=256,
    max_headers=16,
    max_handshake_body=1024,
)

# RFC 6455 §1.3's sample key: fixed, so a fuzzer that found the matching
# Sec-WebSocket-Accept keeps it across mutations.
FUZZ_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
_SUBPROTOCOLS = ("chat", "superchat")
_SERVER_DEFLATE = DeflateOptions(client_max_window_bits=11)
_CLIENT_DEFLATE = DeflateOptions()
# An offer the server must agree to in full (RFC 7692 §7.1), else NegotiationError.
_DEMANDING_DEFLATE = DeflateOptions(
    server_no_context_takeover=True, server_max_window_bits=10, client_max_window_bits=12
)

# The last 4 octets of a sync flush (RFC 7692 §7.2.2) and the padding byte a
# BFINAL block may be followed by (§7.2.3.4).
_TAIL = b"\x00\x00\xff\xff"
_PAD = b"\x00"

_OPCODES = (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
_CLOSE = 0x8
# Longest frame header: 2 bytes, a 64-bit length and a masking key.
_MAX_HEADER = 14

# Chunk sizes a settings byte picks from; 0 feeds everything at once.
_STEPS = (0, 1, 2, 3, 7, 64, 500, 4096)


def _state(conn: Connection) -> State:
    """The state of ``conn``, read anew (a call the type checker does not narrow)."""
    return conn.state


class _Reader:
    """Reads settings and fields off the front of a fuzz input; past its end it reads zeros."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def __bool__(self) -> bool:
        return self._pos < len(self._data)

    def byte(self) -> int:
        if self._pos >= len(self._data):
            return 0
        value = self._data[self._pos]
        self._pos += 1
        return value

    def take(self, size: int) -> bytes:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self._data))


def _chunks(data: bytes, step: int) -> Iterator[bytes]:
    """Yield ``data`` in pieces of ``step`` bytes (0: at once); always at least one piece."""
    if step <= 0 or step >= len(data):
        yield data
        return
    for start in range(0, len(data), step):
        yield data[start : start + step]


# -- HTTP heads -----------------------------------------------------------------

# 411 and 413: a plain POST without Content-Length, or with a body over the limit.
_REQUEST_STATUSES = frozenset({400, 411, 413, 414, 431, 505})
_RESPONSE_STATUSES = frozenset({400, 431})

# ("head", (head, end)), ("incomplete", None) or ("refused", status)
_Outcome = tuple[str, object]


def http_request(data: bytes) -> None:
    """``parse_request_head`` on ``data``, whole and in chunks of ``len(data) % 7 + 1`` bytes.

    - only :class:`InvalidHandshake` with status 400, 414, 431 or 505 is raised;
    - a head ends with a blank line within ``data``, is HTTP/1.1 with one Host
      or HTTP/1.0 with at most one;
    - ``build_request`` of an HTTP/1.1 head parses back to the same head;
    - whole and chunked parsing agree: the same head, both incomplete, or both
      refused with the same status (a line limit may win over a bare LF).
    """
    whole = _request_outcome(data, 0)
    split = _request_outcome(data, len(data) % 7 + 1)
    _check_agree(whole, split)


def http_response(data: bytes) -> None:
    """``parse_response_head`` on ``data``, whole and in chunks, as :func:`http_request`.

    Refusals are :class:`InvalidHandshake` with status 400 or 431; a head is
    HTTP/1.0 or 1.1 with a status from 100 to 599 and, written out again,
    parses back to itself.
    """
    whole = _response_outcome(data, 0)
    split = _response_outcome(data, len(data) % 7 + 1)
    _check_agree(whole, split)


def _check_agree(whole: _Outcome, split: _Outcome) -> None:
    assert whole[0] == split[0], f"whole input: {whole!r}, in chunks: {split!r}"
    if whole != split:
        # A line both too long and ending in a bare LF is refused for its
        # length while it arrives (414/431), for its LF when whole (400).
        assert whole[0] == "refused" and {whole[1], split[1]} & {414, 431}, (whole, split)


def _request_outcome(data: bytes, step: int) -> _Outcome:
    buf = bytearray()
    scanner = HeadScanner(HTTP_LIMITS, request=True)
    parsed: tuple[RequestHead, int] | None = None
    try:
        for chunk in _chunks(data, step):
            buf += chunk
            parsed = parse_request_head(buf, HTTP_LIMITS, scanner=scanner)
            if parsed is not None:
                break
    except InvalidHandshake as exc:
        assert exc.status in _REQUEST_STATUSES, f"request refused with status {exc.status}"
        return ("refused", exc.status)
    if parsed is None:
        return ("incomplete", None)
    head, end = parsed
    _check_head_end(data, end)
    assert head.version in ("HTTP/1.1", "HTTP/1.0"), head.version
    hosts = len(head.headers.get_all("Host"))
    assert hosts == 1 or (hosts == 0 and head.version == "HTTP/1.0"), head.headers
    if head.version == "HTTP/1.1":
        # Written out again (build_request writes HTTP/1.1 and may lengthen
        # a line: default limits).
        again = parse_request_head(build_request(head.method, head.target, head.headers), Limits())
        assert again is not None and again[0] == head, f"{head!r} parsed back as {again!r}"
    return ("head", (head, end))


def _response_outcome(data: bytes, step: int) -> _Outcome:
    buf = bytearray()
    scanner = HeadScanner(HTTP_LIMITS, request=False)
    parsed: tuple[ResponseHead, int] | None = None
    try:
        for chunk in _chunks(data, step):
            buf += chunk
            parsed = parse_response_head(buf, HTTP_LIMITS, scanner=scanner)
            if parsed is not None:
                break
    except InvalidHandshake as exc:
        assert exc.status in _RESPONSE_STATUSES, f"response refused with status {exc.status}"
        return ("refused", exc.status)
    if parsed is None:
        return ("incomplete", None)
    head, end = parsed
    _check_head_end(data, end)
    assert head.version in ("HTTP/1.0", "HTTP/1.1"), head.version
    assert 100 <= head.status <= 599, head.status
    fields = "".join(f"{name}: {value}\r\n" for name, value in head.headers.items())
    raw = f"{head.version} {head.status} {head.reason}\r\n{fields}\r\n".encode("latin-1")
    again = parse_response_head(raw, Limits())
    assert again is not None and again[0] == head, f"{head!r} parsed back as {again!r}"
    return ("head", (head, end))


def _check_head_end(data: bytes, end: int) -> None:
    assert 4 <= end <= len(data), end
    assert data[end - 4 : end] == b"\r\n\r\n", data[:end]


# -- opening handshake ------------------------------------------------------------


def server_handshake(data: bytes) -> None:
    """``ServerHandshake`` reading ``data`` as the client's request, then answering it.

    - ``next_request`` raises only :class:`InvalidHandshake` (400/414/431/505),
      and raises the same error again; ``error_response`` builds a response
      with that status for it;
    - a request's ``leftover`` is what follows its head in ``data``;
    - ``Request.path`` and ``Request.query`` work for every request returned;
    - an invalid upgrade carries 400, 405 or 426, and its refusal builds;
    - a valid upgrade is accepted without error, with the right
      Sec-WebSocket-Accept; a negotiated permessage-deflate answer is one a
      client takes (``accept_response``), and the two engines agree.
    """
    hs = ServerHandshake(limits=HTTP_LIMITS, compression=_SERVER_DEFLATE)
    hs.receive_data(data)
    try:
        request = hs.next_request()
    except InvalidHandshake as exc:
        assert exc.status in _REQUEST_STATUSES, f"request refused with status {exc.status}"
        _check_refusal(ServerHandshake.error_response(exc), exc.status)
        try:
            hs.next_request()
        except InvalidHandshake as again:
            assert again is exc, "a second call raised another error"
        else:
            raise AssertionError("a refused request was accepted on a second call")
        return
    if request is None:
        assert hs.leftover == b""
        return
    assert hs.next_request() is request
    leftover = hs.leftover
    assert data.endswith(leftover) and data[: len(data) - len(leftover)].endswith(b"\r\n\r\n")
    # The server routes on these; they must not fail on a request it parsed.
    _ = request.path, request.query
    if request.error is not None:
        assert not request.is_upgrade
        assert request.error.status in (400, 405, 426), request.error.status
        _check_refusal(hs.reject(error_reject(request.error)), request.error.status)
        return
    subprotocol = request.subprotocols[0] if request.subprotocols else None
    response, sent, engine = hs.accept(request, Accept(subprotocol))
    parsed = parse_response_head(response, Limits())
    assert parsed is not None and parsed[1] == len(response), response
    head = parsed[0]
    assert head.status == 101, head
    expected = accept_key(request.headers["Sec-WebSocket-Key"])
    assert head.headers.get_all("Sec-WebSocket-Accept") == [expected], head.headers
    assert sent.subprotocol == subprotocol
    answered = parse_extensions(head.headers.get_all("Sec-WebSocket-Extensions"))
    if engine is None:
        assert not answered, answered
        return
    assert [name for name, _ in answered] == ["permessage-deflate"], answered
    _check_engines(engine, accept_response(answered[0][1], DeflateOptions()))


def _check_refusal(response: bytes, status: int) -> None:
    parsed = parse_response_head(response, Limits())
    assert parsed is not None, response
    head, end = parsed
    assert head.status == (status if 400 <= status <= 599 else 400), (head.status, status)
    assert head.headers.get_all("Content-Length") == [str(len(response) - end)], head.headers
    assert "close" in (head.headers.get("Connection") or "").lower(), head.headers


def _check_engines(server: PerMessageDeflate, client: PerMessageDeflate) -> None:
    """Both ends of a negotiation agree, and a message crosses each way."""
    assert server.local_max_window_bits == client.remote_max_window_bits, (server, client)
    assert server.remote_max_window_bits == client.local_max_window_bits, (server, client)
    assert server.local_no_context_takeover == client.remote_no_context_takeover, (server, client)
    assert server.remote_no_context_takeover == client.local_no_context_takeover, (server, client)
    message = b"permessage-deflate " * 20
    for _ in range(2):
        assert client.decompress(server.compress(message), True, None) == message
        assert server.decompress(client.compress(message), True, None) == message


def client_handshake(data: bytes) -> None:
    """``ClientHandshake`` (key ``FUZZ_KEY``) reading ``data`` as the server's response.

    Fed in chunks (size from ``len(data)``), then the end of the connection:

    - ``next_response`` raises only :class:`InvalidHandshake` or
      :class:`NegotiationError`, and after EOF never returns None;
    - a :class:`Reject` has a final status and a body of at most
      ``max_handshake_body`` bytes; ``leftover`` is what follows it in ``data``;
    - an :class:`Accept` carries the right Sec-WebSocket-Accept and an offered
      subprotocol; a negotiated permessage-deflate engine works with its mirror.
    """
    hs = ClientHandshake(
        "example.com",
        "/chat",
        subprotocols=_SUBPROTOCOLS,
        compression=_CLIENT_DEFLATE,
        limits=HTTP_LIMITS,
        key=FUZZ_KEY,
    )
    result: tuple[Accept, PerMessageDeflate | None] | Reject | None = None
    fed = 0
    try:
        for chunk in _chunks(data, _STEPS[len(data) % len(_STEPS)]):
            fed += len(chunk)
            hs.receive_data(chunk)
            result = hs.next_response()
            if result is not None:
                break
        if result is None:
            hs.receive_eof()
            result = hs.next_response()
            assert result is not None, "no outcome after the end of the connection"
    except HandshakeError as exc:
        assert isinstance(exc, (InvalidHandshake, NegotiationError)), repr(exc)
        return
    assert hs.next_response() is result
    assert data[:fed].endswith(hs.leftover)
    if isinstance(result, Reject):
        assert 200 <= result.status <= 599, result.status
        assert len(result.body) <= HTTP_LIMITS.max_handshake_body, len(result.body)
        return
    accept, engine = result
    assert accept.subprotocol in (None, *_SUBPROTOCOLS), accept.subprotocol
    assert accept.headers.get_all("Sec-WebSocket-Accept") == [accept_key(FUZZ_KEY)]
    assert len(accept.extensions) == (engine is not None), accept.extensions
    if engine is not None:
        _check_engines(_mirror(engine), engine)


def _mirror(engine: PerMessageDeflate) -> PerMessageDeflate:
    """The engine the peer of ``engine`` negotiated."""
    return PerMessageDeflate(
        is_client=not engine.is_client,
        local_no_context_takeover=engine.remote_no_context_takeover,
        remote_no_context_takeover=engine.local_no_context_takeover,
        local_max_window_bits=engine.remote_max_window_bits,
        remote_max_window_bits=engine.local_max_window_bits,
    )


# -- frames ---------------------------------------------------------------------

# (expect_masked, allow_rsv1, max_payload): a server with deflate and a frame
# limit, and a client with neither.
_PARSERS = ((True, True, 1000), (False, False, None))


def _frame_limit(parser: FrameParser, rsv1: bool) -> int | None:
    limit = parser.max_payload
    return compressed_limit(limit) if rsv1 and limit is not None else limit


def frames(data: bytes) -> None:
    """``FrameParser`` on ``data`` as a server (masked, RSV1, 1000-byte limit) and a client.

    - only :class:`RemoteProtocolError` (1002) or :class:`PayloadTooBig` (1009) is raised;
    - every frame yielded is valid: a known opcode, control frames whole and
      at most 125 bytes without RSV1, the payload within the limit;
    - every frame is in canonical form: encoding it again (with its masking
      key) gives back the bytes it was parsed from;
    - what is left unparsed is one incomplete frame, under the limit plus a header;
    - whole and in chunks of ``len(data) % 13 + 1`` bytes give the same frames
      and the same error.
    """
    step = len(data) % 13 + 1
    for masked, rsv1, limit in _PARSERS:
        whole = _parse_frames(data, 0, masked=masked, rsv1=rsv1, limit=limit)
        split = _parse_frames(data, step, masked=masked, rsv1=rsv1, limit=limit)
        assert whole == split, f"whole input: {whole!r}, in chunks: {split!r}"


def _parse_frames(
    data: bytes, step: int, *, masked: bool, rsv1: bool, limit: int | None
) -> tuple[list[RawFrame], str | None, bytes]:
    parser = FrameParser(expect_masked=masked, max_payload=limit, allow_rsv1=rsv1)
    buf = bytearray()
    got: list[RawFrame] = []
    offset = 0  # where the next frame starts in data
    try:
        for chunk in _chunks(data, step):
            buf += chunk
            for frame in parser.parse(buf):
                offset += _check_parsed_frame(frame, data, offset, parser)
                got.append(frame)
    except RemoteProtocolError as exc:
        expected = 1009 if isinstance(exc, PayloadTooBig) else 1002
        assert exc.close_code == expected, (exc, exc.close_code)
        return got, f"{type(exc).__name__}: {exc}", b""
    left = bytes(buf)
    assert left == data[offset:], "the buffer does not hold what follows the last frame"
    assert not list(FrameParser(expect_masked=masked, max_payload=limit, allow_rsv1=rsv1).parse(buf))
    if left:
        frame_limit = _frame_limit(parser, bool(left[0] & 0x40))
        if frame_limit is not None:
            assert len(left) < _MAX_HEADER + frame_limit, len(left)
    return got, None, left


def _check_parsed_frame(frame: RawFrame, data: bytes, offset: int, parser: FrameParser) -> int:
    """Check one parsed frame against the bytes at ``offset``; return its size on the wire."""
    fin, rsv1, opcode, payload = frame
    assert opcode in _OPCODES, opcode
    if opcode >= 0x8:
        assert fin and not rsv1 and len(payload) <= MAX_CONTROL_PAYLOAD, frame
    assert parser.allow_rsv1 or not rsv1
    limit = _frame_limit(parser, rsv1)
    assert limit is None or len(payload) <= limit, len(payload)
    header, _ = encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=False)
    wire = bytes(header)
    body = payload
    if parser.expect_masked:
        start = offset + len(wire)
        key = data[start : start + 4]
        wire = bytes((wire[0], wire[1] | 0x80)) + wire[2:] + key
        body = apply_mask(payload, key)
    size = len(wire) + len(body)
    assert data[offset : offset + size] == wire + body, "frame not parsed from its canonical encoding"
    return size


def frame_roundtrip(data: bytes) -> None:
    """Well-formed frames built from ``data`` go through ``encode_frame`` and back unchanged.

    Layout: a settings byte (chunk size), then per frame a flags byte
    (opcode, FIN, RSV1, long) and a size byte; long frames repeat a few bytes
    to reach the 16- and 64-bit length forms. Masked and unmasked, fed in
    chunks, the parser yields exactly the frames encoded and keeps nothing.
    """
    r = _Reader(data)
    step = _STEPS[r.byte() % len(_STEPS)]
    specs: list[RawFrame] = []
    while r and len(specs) < 16:
        flags = r.byte()
        size = r.byte()
        opcode = _OPCODES[flags % len(_OPCODES)]
        if opcode >= 0x8:
            specs.append((True, False, opcode, r.take(size % (MAX_CONTROL_PAYLOAD + 1))))
            continue
        if flags & 0x40:
            pattern = r.take(3) + b"\xa5"
            length = size * 331
            payload = (pattern * (length // len(pattern) + 1))[:length]
        else:
            payload = r.take(size)
        specs.append((bool(flags & 0x10), bool(flags & 0x20), opcode, payload))
    for masked in (False, True):
        wire = b"".join(
            bytes(part)
            for fin, rsv1, opcode, payload in specs
            for part in encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=masked)
        )
        # Byte by byte through 80 KiB frames costs seconds, and finds nothing more.
        chunk_size = step if step == 0 or len(wire) < 8192 else max(step, 4096)
        parser = FrameParser(expect_masked=masked, max_payload=None, allow_rsv1=True)
        buf = bytearray()
        got: list[RawFrame] = []
        for chunk in _chunks(wire, chunk_size):
            buf += chunk
            got.extend(parser.parse(buf))
        assert got == specs, f"encoded {specs!r}, parsed {got!r}"
        assert not buf, bytes(buf)


# -- permessage-deflate ------------------------------------------------------------

_MAX_SIZES = (0, 1, 16, 100, 1000, 5000, 65536, None)


def inflate(data: bytes) -> None:
    """``PerMessageDeflate.decompress`` on fragments read from ``data``, against plain zlib.

    Layout: a settings byte (window bits 8-15, no context takeover, the
    message size limit, the role), then fragments, each a byte (FIN and the
    high bits of the length), a byte (the low bits) and the data.

    - only :class:`RemoteProtocolError` 1007 and :class:`PayloadTooBig` are raised;
    - no call returns more than the budget left of ``max_size`` (+0);
    - the output is what zlib makes of the same stream (with the tail that
      RFC 7692 strips appended at FIN);
    - PayloadTooBig only when zlib's output is over the limit (or zlib fails);
      1007 only when zlib fails or a BFINAL block is followed by more than
      the padding RFC 7692 §7.2.3.4 allows.
    """
    r = _Reader(data)
    settings = r.byte()
    bits = 8 + settings % 8
    no_takeover = bool(settings & 0x08)
    max_size = _MAX_SIZES[(settings >> 4) % len(_MAX_SIZES)]
    engine = PerMessageDeflate(
        is_client=bool(settings & 0x80),
        local_no_context_takeover=False,
        remote_no_context_takeover=no_takeover,
        local_max_window_bits=15,
        remote_max_window_bits=bits,
    )
    reference: zlib._Decompress | None = None
    produced = 0  # by the message so far
    while r:
        head = r.byte()
        fin = bool(head & 1)
        fragment = r.take((head >> 1) << 8 | r.byte())
        if reference is None:
            reference = zlib.decompressobj(-bits)
        budget = None if max_size is None else max_size - produced
        expected = b""
        try:
            expected = reference.decompress(fragment)
            if fin:
                expected += reference.decompress(_TAIL)
        except zlib.error:
            zlib_failed = True
        else:
            zlib_failed = False
        allowed = (_PAD + _TAIL, _TAIL) if fin else (_PAD, b"")
        garbage = reference.eof and reference.unused_data not in allowed
        try:
            out = engine.decompress(fragment, fin, budget)
        except PayloadTooBig:
            assert budget is not None
            assert zlib_failed or len(expected) > budget, "PayloadTooBig for a message within the limit"
            reference, produced = None, 0
            continue
        except RemoteProtocolError as exc:
            assert exc.close_code == 1007, (exc, exc.close_code)
            assert zlib_failed or garbage, f"1007 for data zlib takes: {exc}"
            reference, produced = None, 0
            continue
        assert budget is None or len(out) <= budget, (len(out), budget)
        assert not zlib_failed, "data zlib refuses was decompressed"
        assert not garbage, "data after the final block was accepted"
        assert out == expected, "output differs from zlib's"
        produced += len(out)
        if fin:
            produced = 0
            # The engine starts afresh after a message without context
            # takeover, and after one that ended the DEFLATE stream.
            if no_takeover or reference.eof:
                reference = None


def deflate_roundtrip(data: bytes) -> None:
    """Fragments read from ``data`` compressed by one engine come out of its peer unchanged.

    Layout: a settings byte (window bits 8-15, no context takeover,
    compression level), a byte (memory level), then fragments, each a byte
    (FIN, repeat) and a length byte, the data, and with "repeat" a repeat
    count. Also: a compressed fragment is at most ``compressed_limit(size)``
    bytes, the slack ``FrameParser`` allows a compressed frame.
    """
    r = _Reader(data)
    settings = r.byte()
    bits = 8 + settings % 8
    no_takeover = bool(settings & 0x08)
    sender = PerMessageDeflate(
        is_client=True,
        local_no_context_takeover=no_takeover,
        remote_no_context_takeover=False,
        local_max_window_bits=bits,
        remote_max_window_bits=15,
        compress_level=(settings >> 4) % 11 - 1,
        memory_level=r.byte() % 9 + 1,
    )
    receiver = _mirror(sender)
    while r:
        head = r.byte()
        fragment = r.take(r.byte())
        if head & 2:
            fragment *= r.byte() + 1
        fin = bool(head & 1)
        payload = sender.compress(fragment, fin)
        size = len(fragment)
        assert len(payload) <= compressed_limit(size), (size, len(payload))
        out = receiver.decompress(payload, fin, None)
        assert out == fragment, f"sent {fragment!r}, received {out!r}"


# -- connection cores -------------------------------------------------------------

# The longest head a HeadScanner lets through: the start line, every field
# line and the blank line, each with its CRLF.
_HEAD_BOUND = (
    CORE_LIMITS.max_request_line + 2 + CORE_LIMITS.max_headers * (CORE_LIMITS.max_header_line + 2) + 2
)


class _SentFrames:
    """Parses and checks everything a core queues after the HTTP part of the handshake."""

    def __init__(self, *, masked: bool) -> None:
        self._parser = FrameParser(expect_masked=masked, max_payload=None, allow_rsv1=True)
        self._buf = bytearray()
        self.decoder: PerMessageDeflate | None = None  # the peer's engine, once negotiated
        self.compression = False
        # What the harness asked the core to send, to compare with what went out.
        self.expected: deque[str | bytes] = deque()
        self.close_code: int | None = None
        self._message: list[bytes] = []
        self._opcode: int | None = None
        self._compressed = False

    def feed(self, items: Sequence[bytes | bytearray | memoryview]) -> None:
        for item in items:
            self._buf += item
        for fin, rsv1, opcode, payload in self._parser.parse(self._buf):
            assert self.close_code is None, "a frame was sent after the Close frame"
            if opcode == _CLOSE:
                self.close_code = decode_close(payload)[0]
            elif opcode < 0x8:
                self._on_data(fin, rsv1, opcode, payload)
        assert not self._buf, "data_to_send() ended inside a frame"

    def _on_data(self, fin: bool, rsv1: bool, opcode: int, payload: bytes) -> None:
        if opcode == 0x0:
            assert self._opcode is not None and not rsv1, "a bad continuation frame was sent"
        else:
            assert self._opcode is None, "a message was sent inside another"
            assert self.compression or not rsv1, "RSV1 was sent without permessage-deflate"
            self._opcode = opcode
            self._compressed = rsv1
        if self._compressed:
            assert self.decoder is not None
            payload = self.decoder.decompress(payload, fin, None)
        self._message.append(payload)
        if fin:
            data = b"".join(self._message)
            sent: str | bytes = data.decode("utf-8") if self._opcode == 0x1 else data
            assert self.expected, "a message was sent that nobody asked for"
            assert sent == self.expected.popleft(), "the message sent differs from the one asked for"
            self._message = []
            self._opcode = None


class _Core:
    """Drives one connection core and checks it after every call."""

    def __init__(self, conn: Connection, head_buffer: Callable[[], int], *, send_more: bool) -> None:
        self.conn = conn
        self.head_buffer = head_buffer
        self.send_more = send_more
        self.sent = _SentFrames(masked=conn.is_client)
        self.handshake_event: Event | None = None
        self.http_answer: int | None = None  # the status of the server's HTTP response
        self.answered = False
        self.close_event: Close | None = None
        self.we_closed = False
        self.eof = False

    # -- driving --------------------------------------------------------------

    def receive(self, chunk: bytes, *, answer: bool) -> None:
        was_closed = self.conn.state is State.CLOSED
        self.conn.receive_data(chunk)  # the invariant above all: never raises
        self._settle(answer=answer, was_closed=was_closed)

    def receive_eof(self) -> None:
        was_closed = self.conn.state is State.CLOSED
        self.eof = True
        self.conn.receive_eof()
        assert self.conn.state is State.CLOSED and self.conn.close_transport
        self._settle(answer=False, was_closed=was_closed)

    def close(self) -> None:
        """Start the closing handshake, as an application ending the connection."""
        if self.conn.state is State.OPEN:
            self.conn.send(Close(1000, "bye"))
            self.we_closed = True
            assert _state(self.conn) is State.CLOSING
            self.sent.feed(self.conn.data_to_send())
            assert self.sent.close_code == 1000

    def answer_late(self) -> None:
        """Server: answer a Request that came with the last chunk."""
        self._settle(answer=True, was_closed=self.conn.state is State.CLOSED)

    def _settle(self, *, answer: bool, was_closed: bool) -> None:
        conn = self.conn
        out: list[bytes | bytearray | memoryview] = []
        while True:
            events = conn.events_received()
            if not events:
                break
            assert not was_closed, f"events after the connection closed: {events!r}"
            for event in events:
                self._on_event(event)
            out.extend(conn.data_to_send())
        if answer:
            self._answer()
            for event in conn.events_received():  # from frames that came with the request
                self._on_event(event)
        if conn.failure_pending:
            # The I/O layer lets the messages before the violation be read first.
            conn.commit_failure()
            assert not conn.failure_pending
        out.extend(conn.data_to_send())
        assert not conn.events_received()
        if was_closed:
            assert not out, f"output after the connection closed: {out!r}"
        self._check_output(out)
        self._check_state()
        self._check_memory()

    def _on_event(self, event: Event) -> None:
        conn = self.conn
        limits = conn.limits
        if isinstance(event, (Request, Accept, Reject)):
            assert self.handshake_event is None, f"a second handshake event: {event!r}"
            if isinstance(event, Request):
                assert not conn.is_client
                _ = event.path, event.query
            else:
                assert conn.is_client
                if isinstance(event, Reject):
                    assert 200 <= event.status <= 599
                    assert len(event.body) <= limits.max_handshake_body
                else:
                    self._opened()
            self.handshake_event = event
            return
        assert self.handshake_event is not None, f"{event!r} before the handshake"
        assert self.close_event is None, f"{event!r} after a Close"
        if isinstance(event, (TextMessage, BytesMessage)):
            echo: TextMessage | BytesMessage
            if isinstance(event, TextMessage):
                size = len(event.data.encode("utf-8"))
                echo = TextMessage(event.data)
                content: str | bytes = event.data
            else:
                assert isinstance(event.data, bytes), type(event.data)
                size = len(event.data)
                echo = BytesMessage(event.data)
                content = event.data
            assert event.fin
            assert limits.max_message_size is None or size <= limits.max_message_size, size
            if conn.state is State.OPEN:
                # Echo: exercises the sending side, compression included.
                conn.send(echo)
                self.sent.expected.append(content)
        elif isinstance(event, (Ping, Pong)):
            assert len(event.payload) <= MAX_CONTROL_PAYLOAD
        else:
            assert isinstance(event, Close), repr(event)
            assert event.code == 1005 or is_valid_received_close_code(event.code), event.code
            assert conn.close_received == event
            self.close_event = event

    def _opened(self) -> None:
        conn = self.conn
        # Frames that came with the handshake may have closed it already.
        assert conn.state is not State.CONNECTING, conn.state
        pmd = conn._pmd
        self.sent.compression = pmd is not None
        if pmd is not None:
            assert conn.extensions, "deflate engine without a negotiated extension"
            self.sent.decoder = _mirror(pmd)
        if self.send_more and conn.state is State.OPEN:
            conn.send(Ping(b"ping"))
            conn.send(TextMessage("héllo, ", fin=False))
            conn.send(TextMessage("wörld"))
            conn.send(BytesMessage(bytes(range(256)) * 4))
            self.sent.expected.extend(("héllo, wörld", bytes(range(256)) * 4))

    def _answer(self) -> None:
        """Server: answer the Request once the harness decides to."""
        conn = self.conn
        request = self.handshake_event
        if self.answered or not isinstance(request, Request) or conn.state is not State.CONNECTING:
            return
        self.answered = True
        if request.error is not None:
            reply: Accept | Reject = error_reject(request.error)
        elif self.send_more:
            reply = Reject(403, body=b"go away")
        else:
            reply = Accept(request.subprotocols[0] if request.subprotocols else None)
        conn.send(reply)
        out = conn.data_to_send()
        assert out, "no response to the request"
        self._check_http(out[0])
        if isinstance(reply, Accept):
            self._opened()
        else:
            assert _state(conn) is State.CLOSED
        self.sent.feed(out[1:])

    # -- checks ---------------------------------------------------------------

    def _check_http(self, response: bytes | bytearray | memoryview) -> int:
        assert self.http_answer is None, "a second HTTP response"
        raw = bytes(response)
        parsed = parse_response_head(raw, Limits())
        assert parsed is not None and raw.startswith(b"HTTP/1.1 "), raw
        head, end = parsed
        self.http_answer = head.status
        if head.status == 101:
            assert end == len(raw), raw
        else:
            assert 400 <= head.status <= 599, head.status
            assert head.headers.get_all("Content-Length") == [str(len(raw) - end)], raw
        return head.status

    def _check_output(self, out: list[bytes | bytearray | memoryview]) -> None:
        conn = self.conn
        if not out:
            return
        if not conn.is_client and self.http_answer is None:
            # The server's first bytes are HTTP: its answer, or an error response.
            status = self._check_http(out[0])
            failure = conn.failure
            assert isinstance(failure, InvalidHandshake), repr(failure)
            assert status == (failure.status if 400 <= failure.status <= 599 else 400)
            out = out[1:]
            if not out:
                return
        assert self.handshake_event is not None, f"frames sent before the handshake: {out!r}"
        self.sent.feed(out)

    def _check_state(self) -> None:
        conn = self.conn
        _ = conn.close_status(), conn.closed_error()
        if conn.state is not State.CLOSED:
            assert conn.failure is None, repr(conn.failure)
            assert not self.eof
            return
        # RFC 6455 §7.1.1: a client waits for the server to close the TCP connection.
        assert conn.close_transport or (conn.is_client and self.close_event is not None)
        failure = conn.failure
        if failure is None:
            # Closed by the peer's Close frame, the end of the connection or a refusal.
            assert (self.close_event is not None or self.eof or isinstance(self.handshake_event, Reject)) or (
                self.answered and self.http_answer != 101
            ), "closed without a reason"
            if self.close_event is not None:
                assert self.sent.close_code is not None, "the peer's Close was not answered"
        elif isinstance(failure, HandshakeError):
            assert self.sent.close_code is None
            if not conn.is_client and self.handshake_event is None:
                assert self.http_answer is not None, "a bad request got no HTTP response"
            assert conn.close_transport
        else:
            assert isinstance(failure, ProtocolError), repr(failure)
            assert isinstance(failure, RemoteProtocolError), repr(failure)
            assert self.sent.close_code is not None, "a protocol violation sent no Close frame"
            if not self.we_closed and self.close_event is None:
                assert self.sent.close_code == failure.close_code, (self.sent.close_code, failure)
            assert conn.close_transport

    def _check_memory(self) -> None:
        conn = self.conn
        limits = conn.limits
        buffered = len(conn._buffer)
        state = conn.state
        if state is State.CLOSED:
            assert buffered == 0, f"{buffered} bytes kept after the connection closed"
        elif state is State.CONNECTING:
            assert buffered <= limits.max_handshake_body, f"{buffered} bytes buffered before the answer"
            if self.handshake_event is None:
                bound = _HEAD_BOUND + (limits.max_handshake_body if conn.is_client else 0)
                assert self.head_buffer() <= bound, f"{self.head_buffer()} bytes of HTTP head buffered"
        else:
            frame_limit = limits.frame_limit
            if frame_limit is not None:
                if conn._pmd is not None:
                    frame_limit = compressed_limit(frame_limit)
                assert buffered < _MAX_HEADER + frame_limit, f"{buffered} bytes of frame buffered"
        parts = sum(len(part) for part in conn._in_parts)
        assert limits.max_message_size is None or parts <= limits.max_message_size, parts
        if conn._in_opcode is not None:  # a message in progress (the count is stale after one failed)
            assert limits.max_fragments is None or conn._in_frames <= limits.max_fragments, conn._in_frames


def server_connection(data: bytes) -> None:
    """A ``ServerConnection`` fed ``data`` (after a settings byte) as the client's bytes.

    Settings: bit 0 permessage-deflate, bit 1 ``defer_failure``, bit 2 EOF at
    the end, bit 3 answer the Request one chunk late, bit 4 refuse valid
    upgrades (403), bits 5-7 the chunk size. Valid upgrades are accepted with
    the first subprotocol offered; every message received is echoed.

    - ``receive_data`` and ``receive_eof`` never raise; neither do sending
      the answer, the echoes and a Close while the state allows them;
    - events come in order (one Request first, nothing after a Close, none
      after CLOSED) and messages are within the limits;
    - the output is one HTTP response (101, or the failure's status), then
      valid unmasked frames, nothing after a Close, each echo exactly what
      was received (decompressed with the client's engine);
    - CLOSED comes with a reason: a Close frame queued for a protocol
      violation (with its code), an HTTP error for a bad request, the peer's
      Close answered, EOF, or the refusal; otherwise ``failure`` is None;
    - memory: the HTTP head is held to the scanner's limits, bytes before the
      answer to ``max_handshake_body``, a frame in progress to the frame
      limit (plus the deflate slack) and a header; nothing after CLOSED.
    """
    r = _Reader(data)
    settings = r.byte()
    wire = r.rest()
    conn = ServerConnection(
        limits=CORE_LIMITS,
        compression=_SERVER_DEFLATE if settings & 1 else None,
        defer_failure=bool(settings & 2),
    )
    core = _Core(conn, lambda: len(conn._handshake._buffer), send_more=bool(settings & 0x10))
    late = bool(settings & 8)
    for chunk in _chunks(wire, _STEPS[settings >> 5]):
        core.receive(chunk, answer=not late)
        late = False
    core.answer_late()
    if settings & 4:
        core.receive_eof()
    else:
        core.close()


def client_connection(data: bytes) -> None:
    """A ``ClientConnection`` (key ``FUZZ_KEY``) fed ``data`` (after a settings byte) as the server's bytes.

    Settings: bit 0 permessage-deflate, bit 1 ``defer_failure``, bit 2 EOF at
    the end, bit 3 a demanding deflate offer (the server must take no context
    and 10-bit windows), bit 4 send a Ping and a few messages (one fragmented)
    on opening, bits 5-7 the chunk size. Every message received is echoed.
    Checks as :func:`server_connection`, with masked frames, an Accept or a
    Reject as the first event, and nothing sent for a failed handshake.
    """
    r = _Reader(data)
    settings = r.byte()
    wire = r.rest()
    compression = (_DEMANDING_DEFLATE if settings & 8 else _CLIENT_DEFLATE) if settings & 1 else None
    conn = ClientConnection(
        "example.com",
        "/chat",
        subprotocols=_SUBPROTOCOLS,
        compression=compression,
        limits=CORE_LIMITS,
        defer_failure=bool(settings & 2),
    )
    request = conn.data_to_send()
    assert len(request) == 1 and bytes(request[0]).startswith(b"GET /chat HTTP/1.1\r\n"), request
    # A fixed key, so that a fuzzer keeps a valid Sec-WebSocket-Accept once it has one.
    handshake = ClientHandshake(
        "example.com",
        "/chat",
        subprotocols=_SUBPROTOCOLS,
        compression=compression,
        limits=CORE_LIMITS,
        key=FUZZ_KEY,
    )
    conn._handshake = handshake
    core = _Core(conn, lambda: len(handshake._buffer), send_more=bool(settings & 0x10))
    for chunk in _chunks(wire, _STEPS[settings >> 5]):
        core.receive(chunk, answer=False)
    if settings & 4:
        core.receive_eof()
    else:
        core.close()


def _proxy_outcome(data: bytes, step: int) -> tuple[str, object]:
    # ("header", (header, rest)), ("incomplete", None) or ("refused", None).
    parser = ProxyHeaderParser()
    fed = 0
    try:
        for chunk in _chunks(data, step):
            fed += len(chunk)
            header = parser.receive_data(chunk)
            if header is not None:
                # What followed the header: the end of this chunk, then the rest.
                return "header", (header, parser.rest + data[fed:])
    except InvalidProxyHeader:
        return "refused", None
    return "incomplete", None


def proxy_header(data: bytes) -> None:
    """``ProxyHeaderParser`` on ``data``, whole and one byte at a time.

    - only :class:`InvalidProxyHeader` is raised;
    - a header is at most ``DEFAULT_MAX_SIZE`` bytes, and what follows it is
      exactly the rest of ``data``;
    - an address comes with a port from 0 to 65535, source and destination
      both or neither;
    - whole and byte-by-byte parsing agree: the same header and rest, both
      waiting for more, or both refused.
    """
    whole = _proxy_outcome(data, 0)
    split = _proxy_outcome(data, 1)
    assert whole == split, f"whole input: {whole!r}, byte by byte: {split!r}"
    if whole[0] == "header":
        header, rest = whole[1]  # type: ignore[misc]
        assert 0 < header.size <= PROXY_MAX_SIZE, header
        assert rest == data[header.size :], (header, rest)
        assert (header.source is None) == (header.destination is None), header
        for address in (header.source, header.destination):
            assert address is None or 0 <= address[1] <= 65535, header


TARGETS: dict[str, Callable[[bytes], None]] = {
    "http_request": http_request,
    "http_response": http_response,
    "server_handshake": server_handshake,
    "client_handshake": client_handshake,
    "frames": frames,
    "frame_roundtrip": frame_roundtrip,
    "inflate": inflate,
    "deflate_roundtrip": deflate_roundtrip,
    "server_connection": server_connection,
    "client_connection": client_connection,
    "proxy_header": proxy_header,
}
