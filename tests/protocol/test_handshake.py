"""Tests for wsskit.protocol.handshake: the opening handshake of RFC 6455 §4, both roles."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsskit.exceptions import InvalidHandshake, LocalProtocolError, NegotiationError
from wsskit.protocol.deflate import DeflateOptions, PerMessageDeflate
from wsskit.protocol.events import Accept, Reject, Request
from wsskit.protocol.handshake import (
    GUID,
    ClientHandshake,
    ServerHandshake,
    accept_key,
    make_key,
)
from wsskit.protocol.headers import Headers
from wsskit.protocol.http import parse_request_head, parse_response_head
from wsskit.protocol.limits import Limits

LIMITS = Limits()

# RFC 6455 §1.3.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE_FIELDS = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def raw_request(
    *extra: tuple[str, str],
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    start: str = "GET /chat HTTP/1.1",
) -> bytes:
    """An upgrade request: BASE_FIELDS minus ``drop``, with ``replace`` values, plus ``extra``."""
    replace = replace or {}
    fields = [(n, replace.get(n, v)) for n, v in BASE_FIELDS if n not in drop]
    lines = [start, *(f"{n}: {v}" for n, v in [*fields, *extra])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def server_for(data: bytes, compression: DeflateOptions | None = None) -> ServerHandshake:
    server = ServerHandshake(limits=LIMITS, compression=compression)
    server.receive_data(data)
    return server


def request_for(data: bytes, compression: DeflateOptions | None = None) -> Request:
    request = server_for(data, compression).next_request()
    assert request is not None
    return request


def raw_response(
    *fields: tuple[str, str], status: str = "101 Switching Protocols", key: str = RFC_KEY
) -> bytes:
    """A 101 answer to ``key`` followed by ``fields``."""
    lines = [
        f"HTTP/1.1 {status}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
        *(f"{n}: {v}" for n, v in fields),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client(**kwargs: object) -> ClientHandshake:
    kwargs.setdefault("key", RFC_KEY)
    return ClientHandshake("server.example.com", "/chat", **kwargs)  # type: ignore[arg-type]


def answer(
    handshake: ClientHandshake, data: bytes
) -> tuple[Accept, PerMessageDeflate | None] | Reject | None:
    handshake.receive_data(data)
    return handshake.next_response()


def accepted(handshake: ClientHandshake, data: bytes) -> tuple[Accept, PerMessageDeflate | None]:
    result = answer(handshake, data)
    assert isinstance(result, tuple)
    return result


# -- keys ------------------------------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_make_key() -> None:
    keys = {make_key() for _ in range(8)}
    assert len(keys) == 8
    for key in keys:
        assert len(key) == 24
        assert len(base64.b64decode(key, validate=True)) == 16


# -- ServerHandshake.next_request ------------------------------------------------------------------


def test_next_request() -> None:
    data = raw_request(
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Sec-WebSocket-Protocol", "v2.chat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-foo"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Origin", "https://example.com"),
        start="GET /chat?room=7 HTTP/1.1",
    )
    server = server_for(data)
    request = server.next_request()
    assert request is not None
    assert request.target == "/chat?room=7"
    assert request.path == "/chat"
    assert request.method == "GET"
    assert request.error is None
    assert request.subprotocols == ("chat", "superchat", "v2.chat")
    assert request.extensions == ("permessage-deflate", "x-foo")
    assert request.headers["Origin"] == "https://example.com"
    assert server.next_request() is request
    assert server.leftover == b""


def test_next_request_incomplete_at_every_split() -> None:
    data = raw_request()
    for i in range(len(data)):
        assert server_for(data[:i]).next_request() is None


def test_next_request_one_byte_at_a_time_with_leftover() -> None:
    data = raw_request() + b"\x81\x85frame"
    server = ServerHandshake(limits=LIMITS)
    assert server.leftover == b""
    request = None
    for i in range(len(data)):
        server.receive_data(memoryview(data)[i : i + 1])
        request = server.next_request()
        if request is not None:
            break
    assert request is not None
    assert server.leftover == b""
    server.receive_data(data[i + 1 :])
    assert server.leftover == b"\x81\x85frame"
    server.receive_data(bytearray(b"more"))
    assert server.leftover == b"\x81\x85framemore"


def test_next_request_without_optional_fields() -> None:
    request = request_for(raw_request())
    assert request.subprotocols == ()
    assert request.extensions == ()


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        ("WebSocket", "upgrade"),
        ("h2c, websocket", "keep-alive, Upgrade"),
        ("websocket", "keep-alive,UPGRADE"),
    ],
)
def test_upgrade_and_connection_lists(upgrade: str, connection: str) -> None:
    request = request_for(raw_request(replace={"Upgrade": upgrade, "Connection": connection}))
    assert request.error is None


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (raw_request(start="GET /chat HTTP/1.2"), 505, "HTTP/1.2"),
        (raw_request(start="GET /chat  HTTP/1.1"), 400, "request line"),
        (raw_request(("Bad Name", "x")), 400, "header name"),
        (raw_request(drop=("Host",)), 400, "Host"),
        (raw_request(("Host", "other")), 400, "Host"),
        (raw_request(("Content-Length", "4")), 400, "body"),
        (raw_request(("Transfer-Encoding", "chunked")), 400, "body"),
    ],
)
def test_next_request_malformed_http_raises(data: bytes, status: int, match: str) -> None:
    server = server_for(data)
    with pytest.raises(InvalidHandshake, match=match) as info:
        server.next_request()
    assert info.value.status == status
    # The same error again on later calls, even with more data.
    server.receive_data(b"more")
    with pytest.raises(InvalidHandshake) as again:
        server.next_request()
    assert again.value is info.value


def test_next_request_limits() -> None:
    server = ServerHandshake(limits=Limits(max_request_line=32, max_header_line=64, max_headers=3))
    server.receive_data(b"GET /" + b"x" * 27)  # 32 bytes: at the limit
    assert server.next_request() is None
    server.receive_data(b"x")
    with pytest.raises(InvalidHandshake) as info:
        server.next_request()
    assert info.value.status == 414

    server = ServerHandshake(limits=Limits(max_headers=3))
    data = raw_request()  # 5 fields
    with pytest.raises(InvalidHandshake) as info:
        for byte in data:
            server.receive_data(bytes([byte]))
            server.next_request()
    assert info.value.status == 431
    assert server.leftover == b""  # the head never completed


_INVALID_UPGRADES = [
    (raw_request(start="POST /chat HTTP/1.1"), 405, "method POST"),
    (raw_request(start="get /chat HTTP/1.1"), 405, "method get"),
    (raw_request(start="GET http://server.example.com/chat HTTP/1.1"), 400, "not a path"),
    (raw_request(start="GET * HTTP/1.1"), 400, "not a path"),
    (raw_request(drop=("Upgrade",)), 426, "Upgrade"),
    (raw_request(replace={"Upgrade": "h2c"}), 426, "Upgrade"),
    (raw_request(replace={"Upgrade": "websocket/13"}), 426, "Upgrade"),
    (raw_request(drop=("Connection",)), 426, "Connection: Upgrade"),
    (raw_request(replace={"Connection": "keep-alive"}), 426, "Connection: Upgrade"),
    (raw_request(replace={"Connection": "up grade"}), 400, "invalid Connection"),
    # RFC 6455 §4.1: an upgrade is HTTP/1.1; HTTP/1.0 is read for plain requests only.
    (raw_request(start="GET /chat HTTP/1.0"), 505, "needs HTTP/1.1"),
    (raw_request(start="GET /chat HTTP/1.0", drop=("Host",)), 505, "needs HTTP/1.1"),
    (raw_request(drop=("Sec-WebSocket-Version",)), 426, "Sec-WebSocket-Version"),
    (raw_request(replace={"Sec-WebSocket-Version": "8"}), 426, "Sec-WebSocket-Version"),
    (raw_request(replace={"Sec-WebSocket-Version": "13, 8"}), 426, "Sec-WebSocket-Version"),
    (raw_request(("Sec-WebSocket-Version", "13")), 426, "Sec-WebSocket-Version"),
    (raw_request(drop=("Sec-WebSocket-Key",)), 400, "missing Sec-WebSocket-Key"),
    (raw_request(("Sec-WebSocket-Key", RFC_KEY)), 400, "more than one Sec-WebSocket-Key"),
    (raw_request(replace={"Sec-WebSocket-Key": "not base64!"}), 400, "16 bytes"),
    (raw_request(replace={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"}), 400, "16 bytes"),
    (raw_request(replace={"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}), 400, "16 bytes"),
    (raw_request(replace={"Sec-WebSocket-Key": base64.b64encode(b"x" * 17).decode()}), 400, "16 bytes"),
    (raw_request(replace={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZ\xe9=="}), 400, "16 bytes"),
    (raw_request(("Sec-WebSocket-Protocol", "chat room")), 400, "malformed Sec-WebSocket-Protocol"),
    (raw_request(("Sec-WebSocket-Protocol", " , ")), 400, "empty Sec-WebSocket-Protocol"),
    (raw_request(("Sec-WebSocket-Protocol", "chat, chat")), 400, "repeated subprotocol"),
    (raw_request(("Sec-WebSocket-Extensions", 'x; a="b')), 400, "malformed Sec-WebSocket-Extensions"),
    (raw_request(("Sec-WebSocket-Extensions", "x;;")), 400, "malformed Sec-WebSocket-Extensions"),
]


@pytest.mark.parametrize(("data", "status", "match"), _INVALID_UPGRADES)
def test_invalid_upgrade_is_a_request_with_error(data: bytes, status: int, match: str) -> None:
    server = server_for(data)
    request = server.next_request()
    assert request is not None
    assert request.error is not None
    assert not request.is_upgrade
    assert request.error.status == status
    assert match in str(request.error)
    assert request.method == data.split(b" ", 1)[0].decode()
    # strict raises the same error.
    with pytest.raises(InvalidHandshake) as info:
        server.next_request(strict=True)
    assert info.value is request.error


def test_plain_http_get_keeps_target_and_headers() -> None:
    request = request_for(b"GET /health?verbose=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n")
    assert request.error is not None
    # RFC 9110 §15.5.22: a plain HTTP request to a WebSocket endpoint.
    assert request.error.status == 426
    assert request.query == {"verbose": "1"}
    assert request.headers["Accept"] == "*/*"


# -- ServerHandshake.accept ------------------------------------------------------------------------


def test_accept() -> None:
    server = server_for(raw_request(("Sec-WebSocket-Protocol", "chat, superchat")))
    request = server.next_request()
    assert request is not None
    response, sent, engine = server.accept(
        request, Accept(subprotocol="superchat", headers=Headers([("Set-Cookie", "a=b")]))
    )
    assert engine is None
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n"
        b"Sec-WebSocket-Protocol: superchat\r\n"
        b"Set-Cookie: a=b\r\n"
        b"\r\n"
    )
    assert sent.subprotocol == "superchat"
    assert sent.extensions == ()
    parsed = parse_response_head(response, LIMITS)
    assert parsed is not None
    assert sent.headers == parsed[0].headers


def test_accept_without_subprotocol() -> None:
    server = server_for(raw_request(("Sec-WebSocket-Protocol", "chat")))
    request = server.next_request()
    assert request is not None
    response, sent, _ = server.accept(request, Accept(), subprotocols_allowed=False)
    assert b"Sec-WebSocket-Protocol" not in response
    assert sent.subprotocol is None


@pytest.mark.parametrize(
    ("accept", "allowed", "match"),
    [
        (Accept(subprotocol="other"), True, "not offered"),
        (Accept(subprotocol="Chat"), True, "not offered"),
        (Accept(subprotocol="chat"), False, "no subprotocol"),
        (Accept(headers=Headers([("Sec-WebSocket-Accept", "x")])), True, "sets Sec-WebSocket-Accept"),
        (Accept(headers=Headers([("upgrade", "x")])), True, "sets upgrade"),
        (Accept(headers=Headers([("sec-websocket-extensions", "x")])), True, "sets"),
        (Accept(headers=Headers([("X", "a\r\nb")])), True, "invalid character"),
        (Accept(headers=Headers([("Content-Length", "0")])), True, "Content-Length"),
    ],
)
def test_accept_refuses(accept: Accept, allowed: bool, match: str) -> None:
    server = server_for(raw_request(("Sec-WebSocket-Protocol", "chat")))
    request = server.next_request()
    assert request is not None
    with pytest.raises(LocalProtocolError, match=match):
        server.accept(request, accept, subprotocols_allowed=allowed)
    # A refused accept answers nothing: the handshake can still be answered.
    server.accept(request, Accept())


def test_accept_refuses_invalid_requests() -> None:
    server = server_for(raw_request(start="POST /chat HTTP/1.1"))
    request = server.next_request()
    assert request is not None
    with pytest.raises(LocalProtocolError, match="not a valid WebSocket upgrade"):
        server.accept(request, Accept())
    handmade = Request("/", Headers([("Sec-WebSocket-Key", "short")]))
    with pytest.raises(LocalProtocolError, match="Sec-WebSocket-Key"):
        ServerHandshake(limits=LIMITS).accept(handmade, Accept())
    handmade = Request("/", Headers([("Sec-WebSocket-Key", RFC_KEY), ("Sec-WebSocket-Extensions", "a;;")]))
    with pytest.raises(LocalProtocolError, match="Sec-WebSocket-Extensions"):
        ServerHandshake(limits=LIMITS, compression=DeflateOptions()).accept(handmade, Accept())


def test_answer_only_once() -> None:
    server = server_for(raw_request())
    request = server.next_request()
    assert request is not None
    server.accept(request, Accept())
    with pytest.raises(LocalProtocolError, match="already"):
        server.accept(request, Accept())
    with pytest.raises(LocalProtocolError, match="already"):
        server.reject(Reject(403))
    server = server_for(raw_request())
    server.reject(Reject(403))
    with pytest.raises(LocalProtocolError, match="already"):
        server.accept(request, Accept())


# -- compression negotiation on the server ---------------------------------------------------------


def test_accept_negotiates_deflate() -> None:
    data = raw_request(("Sec-WebSocket-Extensions", "x-foo, permessage-deflate; client_max_window_bits"))
    server = server_for(data, DeflateOptions(server_no_context_takeover=True))
    request = server.next_request()
    assert request is not None
    response, sent, engine = server.accept(request, Accept())
    assert isinstance(engine, PerMessageDeflate)
    assert not engine.is_client
    assert engine.local_no_context_takeover
    assert len(sent.extensions) == 1
    assert sent.extensions[0].startswith("permessage-deflate; server_no_context_takeover")
    assert sent.headers["Sec-WebSocket-Extensions"] == sent.extensions[0]
    assert b"Sec-WebSocket-Extensions: " + sent.extensions[0].encode() + b"\r\n" in response
    assert b"x-foo" not in response


@pytest.mark.parametrize(
    ("offer", "compression"),
    [
        (None, DeflateOptions()),  # nothing offered
        ("x-foo", DeflateOptions()),  # only an unknown extension
        ("permessage-deflate; bogus", DeflateOptions()),  # an offer deflate declines
        ("Permessage-Deflate", DeflateOptions()),  # extension names are matched exactly
        ("permessage-deflate", None),  # the server does not compress
    ],
)
def test_accept_declines_deflate(offer: str | None, compression: DeflateOptions | None) -> None:
    extra = [] if offer is None else [("Sec-WebSocket-Extensions", offer)]
    server = server_for(raw_request(*extra), compression)
    request = server.next_request()
    assert request is not None
    response, sent, engine = server.accept(request, Accept())
    assert engine is None
    assert sent.extensions == ()
    assert b"Sec-WebSocket-Extensions" not in response


# -- ServerHandshake.reject and error_response -----------------------------------------------------


def test_reject_with_body() -> None:
    server = server_for(raw_request())
    data = server.reject(Reject(403, Headers([("Connection", "keep-alive"), ("X-Why", "no")]), b"go away"))
    assert data == (
        b"HTTP/1.1 403 Forbidden\r\n"
        b"X-Why: no\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n"
        b"Content-Length: 7\r\n"
        b"\r\n"
        b"go away"
    )


def test_reject_keeps_content_type_and_allows_no_body() -> None:
    data = ServerHandshake(limits=LIMITS).reject(
        Reject(302, Headers([("Location", "/login"), ("Content-Type", "text/html")]), b"<a>")
    )
    assert data.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"Content-Type: text/html\r\n" in data
    assert b"text/plain" not in data
    data = ServerHandshake(limits=LIMITS).reject(Reject(401))
    assert data == b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("status", [101, 100, 199, 600])
def test_reject_needs_a_final_status(status: int) -> None:
    with pytest.raises(LocalProtocolError, match="final status"):
        ServerHandshake(limits=LIMITS).reject(Reject(status))


def test_reject_does_not_touch_the_event() -> None:
    headers = Headers([("X", "1")])
    ServerHandshake(limits=LIMITS).reject(Reject(403, headers, b"no"))
    assert headers.items() == [("X", "1")]


def _parse_error_response(data: bytes) -> tuple[int, Headers, bytes]:
    parsed = parse_response_head(data, LIMITS)
    assert parsed is not None
    head, consumed = parsed
    body = data[consumed:]
    assert head.headers["Content-Length"] == str(len(body))
    return head.status, head.headers, body


def test_error_response_400() -> None:
    status, headers, body = _parse_error_response(ServerHandshake.error_response(InvalidHandshake("bad key")))
    assert status == 400
    assert headers["Connection"] == "close"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Allow" not in headers
    assert "Sec-WebSocket-Version" not in headers
    assert body == b"Failed to open a WebSocket connection: bad key\n"


def test_error_response_405() -> None:
    status, headers, _ = _parse_error_response(ServerHandshake.error_response(InvalidHandshake("POST", 405)))
    assert status == 405
    assert headers["Allow"] == "GET"


def test_error_response_426() -> None:
    status, headers, _ = _parse_error_response(ServerHandshake.error_response(InvalidHandshake("v8", 426)))
    assert status == 426
    assert headers["Sec-WebSocket-Version"] == "13"
    assert headers["Upgrade"] == "websocket"
    assert headers["Connection"] == "Upgrade, close"


@pytest.mark.parametrize(
    ("given", "sent"), [(414, 414), (431, 431), (505, 505), (101, 400), (200, 400), (600, 400)]
)
def test_error_response_status(given: int, sent: int) -> None:
    status, _, _ = _parse_error_response(ServerHandshake.error_response(InvalidHandshake("x", given)))
    assert status == sent


def test_error_response_for_every_invalid_upgrade() -> None:
    for data, status, _ in _INVALID_UPGRADES:
        request = request_for(data)
        assert request.error is not None
        assert _parse_error_response(ServerHandshake.error_response(request.error))[0] == status


# -- ClientHandshake.request_bytes -----------------------------------------------------------------


def test_request_bytes() -> None:
    handshake = ClientHandshake(
        "example.com:8443",
        "/chat?x=1",
        subprotocols=["chat", "superchat"],
        headers={"User-Agent": "wsskit/test", "X-Extra": "1", "Cookie": "a=b"},
        origin="https://example.com",
        key=RFC_KEY,
    )
    assert handshake.key == RFC_KEY
    data = handshake.request_bytes()
    parsed = parse_request_head(data, LIMITS)
    assert parsed is not None
    head, consumed = parsed
    assert consumed == len(data)
    assert (head.method, head.target) == ("GET", "/chat?x=1")
    names = [name for name, _ in head.headers.items()]
    assert names == [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Origin",
        "User-Agent",
        "X-Extra",
        "Cookie",
    ]
    assert head.headers["Host"] == "example.com:8443"
    assert head.headers["Sec-WebSocket-Key"] == RFC_KEY
    assert head.headers["Sec-WebSocket-Version"] == "13"
    assert head.headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert head.headers["Origin"] == "https://example.com"
    assert head.headers["User-Agent"] == "wsskit/test"


def test_request_bytes_minimal() -> None:
    handshake = ClientHandshake("[::1]:9000", "/")
    head = parse_request_head(handshake.request_bytes(), LIMITS)
    assert head is not None
    fields = head[0].headers
    assert "Sec-WebSocket-Protocol" not in fields
    assert "Sec-WebSocket-Extensions" not in fields
    assert "Origin" not in fields
    assert len(base64.b64decode(fields["Sec-WebSocket-Key"], validate=True)) == 16
    assert ClientHandshake("h", "/").key != ClientHandshake("h", "/").key


def test_request_adds_no_user_agent_of_its_own() -> None:
    head = parse_request_head(ClientHandshake("h", "/").request_bytes(), LIMITS)
    assert head is not None
    assert "User-Agent" not in head[0].headers


def test_request_user_agent_override() -> None:
    handshake = ClientHandshake("h", "/", headers=[("user-agent", "mine/1.0")])
    head = parse_request_head(handshake.request_bytes(), LIMITS)
    assert head is not None
    assert head[0].headers.get_all("User-Agent") == ["mine/1.0"]


def test_request_offers_deflate() -> None:
    handshake = ClientHandshake("h", "/", compression=DeflateOptions(client_no_context_takeover=True))
    head = parse_request_head(handshake.request_bytes(), LIMITS)
    assert head is not None
    offer = head[0].headers["Sec-WebSocket-Extensions"]
    assert offer.startswith("permessage-deflate")
    assert "client_no_context_takeover" in offer


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("", "/"), {}, "empty host"),
        (("h", "chat"), {}, "must start with '/'"),
        (("h", ""), {}, "must start with '/'"),
        (("h", "/a b"), {}, "target"),
        (("h\r\nX: y", "/"), {}, "invalid character"),
        (("h", "/"), {"key": "short"}, "16 bytes"),
        (("h", "/"), {"subprotocols": ["a b"]}, "invalid subprotocol"),
        (("h", "/"), {"subprotocols": [""]}, "invalid subprotocol"),
        (("h", "/"), {"subprotocols": ["a", "a"]}, "repeated"),
        (("h", "/"), {"headers": {"Host": "x"}}, "sets Host"),
        (("h", "/"), {"headers": {"sec-websocket-key": "x"}}, "sets sec-websocket-key"),
        (("h", "/"), {"headers": {"Sec-WebSocket-Protocol": "x"}}, "sets"),
        (("h", "/"), {"headers": {"Connection": "close"}}, "sets"),
        (("h", "/"), {"headers": {"Origin": "a"}, "origin": "b"}, "Origin"),
        (("h", "/"), {"headers": {"X": "a\nb"}}, "invalid character"),
        (("h", "/"), {"origin": "a\x00"}, "invalid character"),
    ],
)
def test_client_refuses_bad_arguments(args: tuple[str, str], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        ClientHandshake(*args, **kwargs)  # type: ignore[arg-type]


def test_client_refuses_a_string_of_subprotocols() -> None:
    with pytest.raises(TypeError):
        ClientHandshake("h", "/", subprotocols="chat")


# -- ClientHandshake.next_response: 101 ------------------------------------------------------------


def test_next_response_accept() -> None:
    handshake = client(subprotocols=["chat", "superchat"])
    response = raw_response(("Sec-WebSocket-Protocol", "superchat"), ("X-Server", "y"))
    handshake.receive_data(response + b"\x81\x02hi")
    result = handshake.next_response()
    assert isinstance(result, tuple)
    accept, engine = result
    assert engine is None
    assert accept.subprotocol == "superchat"
    assert accept.extensions == ()
    assert accept.headers["X-Server"] == "y"
    assert handshake.leftover == b"\x81\x02hi"
    assert handshake.next_response() is result
    handshake.receive_data(b"\x88\x00")
    assert handshake.leftover == b"\x81\x02hi\x88\x00"


def test_next_response_incomplete_at_every_split() -> None:
    response = raw_response()
    for i in range(len(response)):
        handshake = client()
        assert answer(handshake, response[:i]) is None
        assert handshake.leftover == b""


def test_next_response_one_byte_at_a_time() -> None:
    handshake = client()
    data = raw_response() + b"\x89\x00"
    results = []
    for byte in data:
        handshake.receive_data(bytes([byte]))
        results.append(handshake.next_response())
    end = len(raw_response())
    assert results[: end - 1] == [None] * (end - 1)
    assert isinstance(results[end - 1], tuple)
    assert handshake.leftover == b"\x89\x00"


def test_next_response_absent_subprotocol_is_allowed() -> None:
    accept, _ = accepted(client(subprotocols=["chat"]), raw_response())
    assert accept.subprotocol is None


def test_accept_header_case_variants() -> None:
    response = raw_response().replace(b"Upgrade: websocket", b"upgrade: WebSocket")
    response = response.replace(b"Connection: Upgrade", b"CONNECTION: keep-alive, upgrade")
    accepted(client(), response)


def test_content_length_zero_on_101_is_tolerated() -> None:
    accepted(client(), raw_response(("Content-Length", "0")))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (raw_response().replace(b"HTTP/1.1", b"HTTP/1.0"), "HTTP/1.0"),
        (raw_response().replace(b"Upgrade: websocket\r\n", b""), "Upgrade"),
        (raw_response().replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"), "Upgrade"),
        (raw_response().replace(b"Upgrade: websocket", b"Upgrade: h2c"), "Upgrade"),
        (raw_response().replace(b"Connection: Upgrade\r\n", b""), "Connection"),
        (raw_response().replace(b"Connection: Upgrade", b"Connection: close"), "Connection"),
        (raw_response().replace(b"Connection: Upgrade", b"Connection: up grade"), "Connection"),
        (raw_response(key=make_key()), "does not match"),
        (raw_response().replace(RFC_ACCEPT.encode(), RFC_ACCEPT.lower().encode()), "does not match"),
        (
            raw_response().replace(b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n", b""),
            "exactly one",
        ),
        (raw_response(("Sec-WebSocket-Accept", RFC_ACCEPT)), "exactly one"),
        (raw_response(("Content-Length", "2")), "body"),
        (raw_response(("Transfer-Encoding", "chunked")), "body"),
        (raw_response(("Sec-WebSocket-Protocol", "a b")), "malformed Sec-WebSocket-Protocol"),
        (raw_response(("Sec-WebSocket-Extensions", 'x; y="')), "malformed Sec-WebSocket-Extensions"),
        (b"HTTP/1.1 101 OK\r\nBad Name: x\r\n\r\n", "header name"),
        (b"HTTP/9.9 101 OK\r\n\r\n", "version"),
    ],
)
def test_next_response_invalid_101(data: bytes, match: str) -> None:
    handshake = client(subprotocols=["chat"])
    handshake.receive_data(data)
    with pytest.raises(InvalidHandshake, match=match) as info:
        handshake.next_response()
    assert handshake.leftover == b""
    with pytest.raises(InvalidHandshake) as again:
        handshake.next_response()
    assert again.value is info.value


@pytest.mark.parametrize(
    ("offered", "fields", "match"),
    [
        (["chat"], [("Sec-WebSocket-Protocol", "other")], "not offered"),
        (["chat"], [("Sec-WebSocket-Protocol", "Chat")], "not offered"),
        ([], [("Sec-WebSocket-Protocol", "chat")], "not offered"),
        (["chat", "v2"], [("Sec-WebSocket-Protocol", "chat, v2")], "exactly one"),
        (
            ["chat", "v2"],
            [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "v2")],
            "exactly one",
        ),
        (["chat"], [("Sec-WebSocket-Protocol", "")], "exactly one"),
        (["chat"], [("Sec-WebSocket-Extensions", "x-foo")], "x-foo"),
        (["chat"], [("Sec-WebSocket-Extensions", "permessage-deflate")], "not offered"),
    ],
)
def test_next_response_negotiation_errors(
    offered: list[str], fields: list[tuple[str, str]], match: str
) -> None:
    handshake = client(subprotocols=offered)
    handshake.receive_data(raw_response(*fields))
    with pytest.raises(NegotiationError, match=match):
        handshake.next_response()


# -- compression negotiation on the client ---------------------------------------------------------


def test_next_response_deflate() -> None:
    handshake = client(compression=DeflateOptions())
    answer_value = "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    accept, engine = accepted(handshake, raw_response(("Sec-WebSocket-Extensions", answer_value)))
    assert isinstance(engine, PerMessageDeflate)
    assert engine.is_client
    assert engine.remote_no_context_takeover
    assert engine.local_max_window_bits == 10
    assert accept.extensions == (answer_value,)


def test_next_response_deflate_declined_by_server() -> None:
    accept, engine = accepted(client(compression=DeflateOptions()), raw_response())
    assert engine is None
    assert accept.extensions == ()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ([("Sec-WebSocket-Extensions", "permessage-deflate, permessage-deflate")], "twice"),
        (
            [
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ],
            "twice",
        ),
        ([("Sec-WebSocket-Extensions", "permessage-deflate, x-foo")], "x-foo"),
        ([("Sec-WebSocket-Extensions", "x-foo, permessage-deflate")], "x-foo"),
        ([("Sec-WebSocket-Extensions", "permessage-deflate; bogus")], "permessage-deflate"),
        (
            [("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=20")],
            "permessage-deflate",
        ),
    ],
)
def test_next_response_deflate_errors(fields: list[tuple[str, str]], match: str) -> None:
    handshake = client(compression=DeflateOptions())
    handshake.receive_data(raw_response(*fields))
    with pytest.raises(NegotiationError, match=match):
        handshake.next_response()


def test_next_response_deflate_demand_refused() -> None:
    # We asked for server_no_context_takeover; a server ignoring that fails negotiation.
    handshake = client(compression=DeflateOptions(server_no_context_takeover=True))
    handshake.receive_data(raw_response(("Sec-WebSocket-Extensions", "permessage-deflate")))
    with pytest.raises(NegotiationError):
        handshake.next_response()


# -- ClientHandshake.next_response: other statuses -------------------------------------------------


def test_reject_with_content_length() -> None:
    handshake = client()
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Why: no\r\n\r\n"
    assert answer(handshake, head + b"forb") is None
    assert handshake.leftover == b""
    result = answer(handshake, b"idden trailing")
    assert isinstance(result, Reject)
    assert result.status == 403
    assert result.headers["X-Why"] == "no"
    assert result.body == b"forbidden"
    assert handshake.leftover == b" trailing"
    assert handshake.next_response() is result


def test_reject_body_one_byte_at_a_time() -> None:
    handshake = client()
    data = b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nabc"
    results = [answer(handshake, bytes([byte])) for byte in data]
    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] == Reject(500, Headers([("Content-Length", "3")]), b"abc")


def test_reject_without_content_length_does_not_wait() -> None:
    handshake = client()
    result = answer(handshake, b"HTTP/1.1 404 Not Found\r\n\r\npartial bo")
    assert isinstance(result, Reject)
    assert result.body == b"partial bo"
    handshake = client()
    result = answer(handshake, b"HTTP/1.1 404 Not Found\r\n\r\n")
    assert isinstance(result, Reject)
    assert result.body == b""


def test_reject_body_is_capped() -> None:
    handshake = client(limits=Limits(max_handshake_body=4))
    result = answer(handshake, b"HTTP/1.1 400 Bad\r\nContent-Length: 100\r\n\r\n123")
    assert result is None
    result = answer(handshake, b"456")
    assert isinstance(result, Reject)
    assert result.body == b"1234"
    handshake = client(limits=Limits(max_handshake_body=4))
    result = answer(handshake, b"HTTP/1.1 400 Bad\r\n\r\n123456")
    assert isinstance(result, Reject)
    assert result.body == b"1234"
    # An absurd length is capped like any other, without converting every digit.
    handshake = client(limits=Limits(max_handshake_body=4))
    result = answer(handshake, b"HTTP/1.1 400 Bad\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n1234")
    assert isinstance(result, Reject)
    assert result.body == b"1234"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    ],
)
def test_reject_without_a_body(head: bytes) -> None:
    handshake = client()
    result = answer(handshake, head + b"5\r\nhello\r\n0\r\n\r\n")
    assert isinstance(result, Reject)
    assert result.body == b""
    assert handshake.leftover == b"5\r\nhello\r\n0\r\n\r\n"


def test_reject_repeated_content_length() -> None:
    result = answer(client(), b"HTTP/1.1 403 X\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nno")
    assert isinstance(result, Reject)
    assert result.body == b"no"


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        (b"Content-Length: 2, 3", "conflicting"),
        (b"Content-Length: 2\r\nContent-Length: 3", "conflicting"),
        (b"Content-Length: two", "invalid Content-Length"),
        (b"Content-Length: -1", "invalid Content-Length"),
        (b"Content-Length: \xb2", "invalid Content-Length"),  # a latin-1 digit "²"
    ],
)
def test_reject_invalid_content_length(lengths: bytes, match: str) -> None:
    handshake = client()
    handshake.receive_data(b"HTTP/1.1 403 X\r\n" + lengths + b"\r\n\r\nabc")
    with pytest.raises(InvalidHandshake, match=match):
        handshake.next_response()


def test_eof_during_reject_body() -> None:
    handshake = client()
    assert answer(handshake, b"HTTP/1.1 503 Busy\r\nContent-Length: 10\r\n\r\nbu") is None
    handshake.receive_eof()
    result = handshake.next_response()
    assert isinstance(result, Reject)
    assert result.body == b"bu"


def test_interim_responses_are_skipped() -> None:
    handshake = client()
    data = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + raw_response() + b"x"
    )
    accept, _ = accepted(handshake, data)
    assert "Link" not in accept.headers
    assert handshake.leftover == b"x"
    handshake = client()
    results = [answer(handshake, bytes([b])) for b in b"HTTP/1.1 103 Hints\r\n\r\nHTTP/1.1 403 No\r\n\r\n"]
    assert results[:-1] == [None] * (len(results) - 1)
    assert isinstance(results[-1], Reject)
    assert results[-1].status == 403


def test_response_limits() -> None:
    handshake = client(limits=Limits(max_header_line=20))
    handshake.receive_data(b"HTTP/1.1 101 OK\r\nX-Long: " + b"v" * 20)
    with pytest.raises(InvalidHandshake, match="too long"):
        handshake.next_response()


@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 101 Switching", raw_response()[:-2]])
def test_eof_before_the_head_ends(data: bytes) -> None:
    handshake = client()
    handshake.receive_data(data)
    assert handshake.next_response() is None
    handshake.receive_eof()
    with pytest.raises(InvalidHandshake, match="connection closed during handshake") as info:
        handshake.next_response()
    with pytest.raises(InvalidHandshake) as again:
        handshake.next_response()
    assert again.value is info.value


def test_eof_after_complete_response() -> None:
    handshake = client()
    handshake.receive_data(raw_response())
    handshake.receive_eof()
    accepted(handshake, b"")


# -- round trips -----------------------------------------------------------------------------------


def _round_trip(
    client_hs: ClientHandshake, server_hs: ServerHandshake, request_cuts: list[int], response_cuts: list[int]
) -> tuple[Request, Accept, PerMessageDeflate | None, Accept, PerMessageDeflate | None]:
    request_data = client_hs.request_bytes() + b"client frames"
    request: Request | None = None
    for chunk in _split(request_data, request_cuts):
        server_hs.receive_data(chunk)
        request = server_hs.next_request()
    assert request is not None
    assert server_hs.leftover == b"client frames"
    chosen = request.subprotocols[-1] if request.subprotocols else None
    response, sent, server_engine = server_hs.accept(request, Accept(subprotocol=chosen))
    result = None
    for chunk in _split(response + b"server frames", response_cuts):
        client_hs.receive_data(chunk)
        result = client_hs.next_response()
    assert isinstance(result, tuple)
    assert client_hs.leftover == b"server frames"
    received, client_engine = result
    return request, sent, server_engine, received, client_engine


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def test_round_trip() -> None:
    client_hs = ClientHandshake(
        "example.com", "/ws?a=b", subprotocols=["one", "two"], origin="https://example.com"
    )
    server_hs = ServerHandshake(limits=LIMITS)
    request, sent, server_engine, received, client_engine = _round_trip(client_hs, server_hs, [], [])
    assert request.target == "/ws?a=b"
    assert request.subprotocols == ("one", "two")
    assert request.headers["Origin"] == "https://example.com"
    assert sent.subprotocol == received.subprotocol == "two"
    assert sent.headers == received.headers
    assert server_engine is None
    assert client_engine is None


def test_round_trip_with_deflate() -> None:
    options = DeflateOptions(client_max_window_bits=12)
    client_hs = ClientHandshake("example.com", "/", compression=options)
    server_hs = ServerHandshake(limits=LIMITS, compression=DeflateOptions(server_no_context_takeover=True))
    request, sent, server_engine, received, client_engine = _round_trip(client_hs, server_hs, [], [])
    assert request.extensions == ("permessage-deflate",)
    assert sent.extensions == received.extensions != ()
    assert server_engine is not None
    assert client_engine is not None
    message = b"hello hello hello hello"
    assert client_engine.decompress(server_engine.compress(message), True, None) == message
    assert server_engine.decompress(client_engine.compress(message), True, None) == message


@settings(max_examples=40, deadline=None)
@given(
    request_cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    response_cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
    compress=st.booleans(),
)
def test_round_trip_any_split(request_cuts: list[int], response_cuts: list[int], compress: bool) -> None:
    options = DeflateOptions() if compress else None
    client_hs = ClientHandshake("h:1", "/", subprotocols=["p"], compression=options)
    server_hs = ServerHandshake(limits=LIMITS, compression=options)
    _, sent, server_engine, received, client_engine = _round_trip(
        client_hs, server_hs, request_cuts, response_cuts
    )
    assert received.subprotocol == "p"
    assert sent.extensions == received.extensions
    assert (server_engine is None) == (client_engine is None) == (not compress)


# -- interoperability with python-websockets -------------------------------------------------------


def test_websockets_client_against_our_server() -> None:
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    from websockets.protocol import State
    from websockets.typing import Subprotocol
    from websockets.uri import parse_uri

    peer = ClientProtocol(
        parse_uri("ws://example.com:8080/chat"),
        subprotocols=[Subprotocol("chat")],
        extensions=[ClientPerMessageDeflateFactory()],
    )
    peer.send_request(peer.connect())
    server_hs = ServerHandshake(limits=LIMITS, compression=DeflateOptions())
    for chunk in peer.data_to_send():
        server_hs.receive_data(chunk)
    request = server_hs.next_request()
    assert request is not None
    assert request.error is None
    assert request.headers["Host"] == "example.com:8080"
    response, _, engine = server_hs.accept(request, Accept(subprotocol="chat"))
    assert engine is not None
    peer.receive_data(response)
    assert peer.handshake_exc is None
    assert peer.state is State.OPEN
    assert peer.subprotocol == "chat"
    assert [ext.name for ext in peer.extensions] == ["permessage-deflate"]


def test_our_client_against_websockets_server() -> None:
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.http11 import Request as PeerRequest
    from websockets.server import ServerProtocol
    from websockets.typing import Subprotocol

    peer = ServerProtocol(subprotocols=[Subprotocol("chat")], extensions=[ServerPerMessageDeflateFactory()])
    client_hs = ClientHandshake(
        "example.com", "/chat", subprotocols=["other", "chat"], compression=DeflateOptions()
    )
    peer.receive_data(client_hs.request_bytes())
    [peer_request] = peer.events_received()
    assert isinstance(peer_request, PeerRequest)
    assert "User-Agent" not in peer_request.headers  # the core adds none; connect() does
    peer.send_response(peer.accept(peer_request))
    for chunk in peer.data_to_send():
        client_hs.receive_data(chunk)
    accept, engine = accepted(client_hs, b"")
    assert accept.subprotocol == "chat"
    assert engine is not None
    assert accept.extensions[0].startswith("permessage-deflate")


# -- the small body of a plain POST -------------------------------------------------------------------

POST_HEAD = b"POST /api/publish HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"


def test_post_body_is_read_in_full_before_the_request() -> None:
    data = POST_HEAD + b'{"a": true}'
    for split in range(len(data) + 1):
        server = ServerHandshake(limits=LIMITS)
        server.receive_data(data[:split])
        if split < len(data):
            assert server.next_request() is None
            server.receive_data(data[split:])
        request = server.next_request()
        assert request is not None
        assert (request.method, request.body, server.leftover) == ("POST", b'{"a": true}', b"")
        assert request.error is not None and request.error.status == 405


def test_bytes_after_the_body_are_not_part_of_it() -> None:
    pipelined = b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n"
    server = server_for(POST_HEAD + b"0123456789A" + pipelined)
    request = server.next_request()
    assert request is not None and request.body == b"0123456789A"
    assert server.leftover == pipelined
    # Never a second request: the same one comes back.
    assert server.next_request() is request


def test_oversized_post_is_refused_from_the_head_alone() -> None:
    server = server_for(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n")
    with pytest.raises(InvalidHandshake) as info:
        server.next_request()
    assert info.value.status == 413
    status, _, body = _parse_error_response(ServerHandshake.error_response(info.value))
    assert status == 413 and b"larger than 65536" in body


def test_post_without_length_gets_411() -> None:
    server = server_for(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n")
    with pytest.raises(InvalidHandshake) as info:
        server.next_request()
    assert info.value.status == 411


def test_core_closes_after_answering_a_pipelined_post() -> None:
    from wsskit.protocol.connection import ServerConnection

    core = ServerConnection()
    core.receive_data(POST_HEAD + b"0123456789A" + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    (request,) = core.events_received()
    assert isinstance(request, Request) and request.body == b"0123456789A"
    core.send(Reject(200, Headers(), b"ok"))
    out = b"".join(core.data_to_send())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.count(b"HTTP/1.1") == 1
    assert core.close_transport
    core.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert core.events_received() == []
