"""The sans-I/O connection core: messages, control frames, closing, failures, limits."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import ConnectionPair, flush
from wsskit.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidState,
    LocalProtocolError,
    PayloadTooBig,
    RemoteProtocolError,
)
from wsskit.protocol.connection import ClientConnection, ServerConnection
from wsskit.protocol.deflate import DeflateOptions
from wsskit.protocol.events import Accept, BytesMessage, Close, Ping, Pong, Reject, Request, TextMessage
from wsskit.protocol.frames import FrameParser, Opcode, encode_frame
from wsskit.protocol.limits import Limits
from wsskit.protocol.state import State

# Every test runs through both twins (C and pure Python): see conftest.py.
pytestmark = pytest.mark.usefixtures("implementation")


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client sends it."""
    return b"".join(bytes(p) for p in encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=True))


def server_frames(pair: ConnectionPair) -> list[tuple[bool, bool, int, bytes]]:
    """Decode what the server queued (unmasked frames)."""
    return list(
        FrameParser(expect_masked=False, max_payload=None, allow_rsv1=True).parse(
            bytearray(flush(pair.server))
        )
    )


def close_code_sent(pair: ConnectionPair) -> int:
    frames = [f for f in server_frames(pair) if f[2] == Opcode.CLOSE]
    assert len(frames) == 1, frames
    return int(struct.unpack("!H", frames[0][3][:2])[0])


# -- handshake and messages ---------------------------------------------------


def test_handshake_opens_both_sides() -> None:
    pair = ConnectionPair(subprotocols=("chat", "superchat"), accept=Accept(subprotocol="superchat"))
    assert pair.client.state is State.OPEN
    assert pair.server.state is State.OPEN
    assert pair.request.path == "/chat"
    assert pair.request.subprotocols == ("chat", "superchat")
    assert pair.client.subprotocol == pair.server.subprotocol == "superchat"


@pytest.mark.parametrize("data", ["", "hello", "é" * 100_000])
def test_text_both_ways(data: str) -> None:
    pair = ConnectionPair()
    pair.client.send(TextMessage(data))
    assert pair.to_server() == [TextMessage(data)]
    pair.server.send(TextMessage(data))
    assert pair.to_client() == [TextMessage(data)]


def test_binary_both_ways() -> None:
    pair = ConnectionPair()
    pair.client.send(BytesMessage(b"\x00\xff" * 40_000))
    assert pair.to_server() == [BytesMessage(b"\x00\xff" * 40_000)]
    pair.server.send(BytesMessage(memoryview(b"abc")))
    assert pair.to_client() == [BytesMessage(b"abc")]


def test_fragmented_send_arrives_whole() -> None:
    pair = ConnectionPair()
    pair.client.send(TextMessage("hé", fin=False))
    pair.client.send(TextMessage("llo", fin=False))
    pair.client.send(Ping(b"mid"))  # control frames may interleave (§5.4)
    pair.client.send(TextMessage("!", fin=True))
    assert pair.to_server() == [Ping(b"mid"), TextMessage("héllo!")]
    pair.server.send(BytesMessage(b"a", fin=False))
    pair.server.send(BytesMessage(b"b"))
    assert pair.to_client() == [Pong(b"mid"), BytesMessage(b"ab")]


def test_fragment_type_cannot_change() -> None:
    pair = ConnectionPair()
    pair.client.send(TextMessage("a", fin=False))
    with pytest.raises(LocalProtocolError):
        pair.client.send(BytesMessage(b"b"))


def test_utf8_split_across_fragments_is_valid() -> None:
    pair = ConnectionPair()
    encoded = "κόσμε".encode()
    pair.server.receive_data(masked(Opcode.TEXT, encoded[:1], fin=False) + masked(Opcode.CONT, encoded[1:]))
    assert pair.server.events_received() == [TextMessage("κόσμε")]


def test_ping_is_answered_by_the_core() -> None:
    pair = ConnectionPair()
    pair.client.send(Ping(b"x"))
    assert pair.to_server() == [Ping(b"x")]
    assert pair.to_client() == [Pong(b"x")]


def test_control_payload_limit_on_send() -> None:
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Ping(b"x" * 126))
    pair.client.send(Pong(b"x" * 125))
    assert pair.to_server() == [Pong(b"x" * 125)]


# -- closing --------------------------------------------------------------------


def test_client_initiated_close() -> None:
    pair = ConnectionPair()
    pair.client.send(Close(1000, "done"))
    assert pair.client.state is State.CLOSING
    with pytest.raises(InvalidState):
        pair.client.send(TextMessage("late"))
    assert pair.to_server() == [Close(1000, "done")]
    assert pair.server.state is State.CLOSED
    assert pair.server.close_transport  # RFC 6455 §7.1.1: the server closes TCP first
    assert pair.to_client() == [Close(1000, "")]
    assert pair.client.state is State.CLOSED
    assert not pair.client.close_transport  # the client waits for the server's EOF
    pair.client.receive_eof()
    assert pair.client.close_transport
    error = pair.client.closed_error()
    assert isinstance(error, ConnectionClosedOK) and error.code == 1000
    assert isinstance(pair.server.closed_error(), ConnectionClosedOK)


def test_server_initiated_close_and_data_in_closing() -> None:
    pair = ConnectionPair()
    pair.server.send(Close(4000, "bye"))
    pair.client.send(TextMessage("in flight"))
    assert pair.to_client() == [Close(4000, "bye")]
    # The server still reads what the client sent before its Close reply.
    assert pair.to_server() == [TextMessage("in flight"), Close(4000, "")]
    assert pair.server.state is State.CLOSED and pair.server.close_transport
    error = pair.server.closed_error()
    assert isinstance(error, ConnectionClosedError) and error.code == 4000


def test_empty_close_is_1005_and_echoed_empty() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(masked(Opcode.CLOSE, b""))
    assert pair.server.events_received() == [Close(1005, "")]
    assert server_frames(pair) == [(True, False, Opcode.CLOSE, b"")]
    assert isinstance(pair.server.closed_error(), ConnectionClosedOK)


def test_nothing_counts_after_close() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(masked(Opcode.CLOSE, b"\x03\xe8") + masked(Opcode.TEXT, b"ignored"))
    assert pair.server.events_received() == [Close(1000, "")]
    pair.server.receive_data(masked(Opcode.TEXT, b"still ignored"))
    assert pair.server.events_received() == []
    with pytest.raises(InvalidState):
        pair.server.send(Close())


def test_eof_without_close_is_1006() -> None:
    pair = ConnectionPair()
    pair.server.receive_eof()
    assert pair.server.state is State.CLOSED and pair.server.close_transport
    error = pair.server.closed_error()
    assert isinstance(error, ConnectionClosedError) and error.code == 1006


def test_local_fail_sends_close() -> None:
    pair = ConnectionPair()
    pair.server.fail(1011, "keepalive ping timeout")
    assert pair.server.close_transport
    assert pair.to_client() == [Close(1011, "keepalive ping timeout")]
    pair.server.fail(1011)  # a second failure sends nothing more
    assert flush(pair.server) == b""


def test_send_close_rules() -> None:
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Close(1006))
    with pytest.raises(LocalProtocolError):
        pair.client.send(Close(1000, "x" * 200))
    pair.client.send(Close())
    with pytest.raises(InvalidState):
        pair.client.send(Close())


# -- violations: the core queues the right Close and keeps no state ------------


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(Opcode.TEXT, b"unmasked"), 1002),
        ([masked(Opcode.CONT, b"orphan")], 1002),
        ([masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.TEXT, b"b")], 1002),
        ([masked(Opcode.TEXT, b"\xff")], 1007),
        ([masked(Opcode.TEXT, b"\xce", fin=True)], 1007),
        ([masked(Opcode.BINARY, b"x", rsv1=True)], 1002),
        ([masked(Opcode.CLOSE, b"\x03")], 1002),
        ([masked(Opcode.CLOSE, b"\x03\xed")], 1002),  # 1005 on the wire
        ([masked(Opcode.CLOSE, b"\x03\xe8\xc3")], 1007),
        ([b"\x83\x80abcd"], 1002),  # reserved opcode
    ],
)
def test_violations_close_with_the_right_code(wire: list[bytes], code: int) -> None:
    pair = ConnectionPair()
    pair.server.receive_data(b"".join(bytes(p) for p in wire))
    assert pair.server.events_received() == []
    assert isinstance(pair.server.failure, RemoteProtocolError)
    assert pair.server.failure.close_code == code
    assert pair.server.state is State.CLOSED and pair.server.close_transport
    assert close_code_sent(pair) == code
    assert pair.server.closed_error().code == code
    # Anything after the violation is ignored.
    pair.server.receive_data(masked(Opcode.TEXT, b"more"))
    assert pair.server.events_received() == []


def test_invalid_utf8_fails_fast_before_the_message_ends() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(
        masked(Opcode.TEXT, b"ok", fin=False) + masked(Opcode.CONT, b"\xed\xa0\x80", fin=False)
    )
    assert pair.server.failure is not None
    assert close_code_sent(pair) == 1007


def test_client_refuses_masked_server_frames() -> None:
    pair = ConnectionPair()
    pair.client.receive_data(masked(Opcode.TEXT, b"masked"))
    assert isinstance(pair.client.failure, RemoteProtocolError)
    assert pair.client.close_transport  # failing closes at once, whatever the role


# -- limits ---------------------------------------------------------------------


def test_oversized_message_refused_from_its_header() -> None:
    pair = ConnectionPair(server_limits=Limits(max_message_size=100))
    header_only = masked(Opcode.BINARY, b"x" * 101)[:8]
    pair.server.receive_data(header_only)
    assert isinstance(pair.server.failure, PayloadTooBig)
    assert close_code_sent(pair) == 1009


def test_fragmented_message_limit_counts_the_whole_message() -> None:
    pair = ConnectionPair(server_limits=Limits(max_message_size=100))
    pair.server.receive_data(masked(Opcode.BINARY, b"x" * 60, fin=False))
    assert pair.server.failure is None
    # The continuation's header alone announces more than the 40 bytes left.
    pair.server.receive_data(masked(Opcode.CONT, b"x" * 41)[:8])
    assert isinstance(pair.server.failure, PayloadTooBig)
    assert close_code_sent(pair) == 1009


def test_message_exactly_at_limit_passes() -> None:
    pair = ConnectionPair(server_limits=Limits(max_message_size=100))
    pair.server.receive_data(masked(Opcode.BINARY, b"x" * 50, fin=False) + masked(Opcode.CONT, b"y" * 50))
    assert pair.server.events_received() == [BytesMessage(b"x" * 50 + b"y" * 50)]
    pair.server.receive_data(masked(Opcode.TEXT, b"z" * 100))
    assert pair.server.events_received() == [TextMessage("z" * 100)]


def test_fragment_count_limit() -> None:
    pair = ConnectionPair(server_limits=Limits(max_fragments=3))
    frames = masked(Opcode.BINARY, b"", fin=False) + masked(Opcode.CONT, b"", fin=False) * 3
    pair.server.receive_data(frames)
    assert isinstance(pair.server.failure, PayloadTooBig)
    assert close_code_sent(pair) == 1009


def test_no_limits_when_asked_by_name() -> None:
    pair = ConnectionPair(server_limits=Limits(max_message_size=None, max_fragments=None))
    pair.client.send(BytesMessage(b"x" * (2**21)))
    assert pair.to_server() == [BytesMessage(b"x" * (2**21))]


# -- compression ------------------------------------------------------------------


def test_compressed_messages_round_trip() -> None:
    pair = ConnectionPair(client_compression=DeflateOptions(), server_compression=DeflateOptions())
    assert pair.client.extensions and pair.client.extensions[0].startswith("permessage-deflate")
    for _ in range(3):
        pair.client.send(TextMessage("spam " * 1000))
        wire = flush(pair.client)
        assert len(wire) < 500  # compressed, and the context carries over
        pair.server.receive_data(wire)
        assert pair.server.events_received() == [TextMessage("spam " * 1000)]
    pair.server.send(BytesMessage(b"a" * 10, fin=False))
    pair.server.send(BytesMessage(b"b" * 10))
    assert pair.to_client() == [BytesMessage(b"a" * 10 + b"b" * 10)]


def test_compression_bomb_costs_no_more_than_the_limit() -> None:
    pair = ConnectionPair(
        client_compression=DeflateOptions(),
        server_compression=DeflateOptions(),
        server_limits=Limits(max_message_size=1 << 16),
    )
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * (1 << 24)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    pair.server.receive_data(masked(Opcode.BINARY, bomb[:-4], rsv1=True))
    assert isinstance(pair.server.failure, PayloadTooBig)
    assert close_code_sent(pair) == 1009


def test_uncompressed_peer_cannot_set_rsv1() -> None:
    pair = ConnectionPair(client_compression=None, server_compression=DeflateOptions())
    assert pair.server.extensions == ()
    pair.server.receive_data(masked(Opcode.TEXT, b"x", rsv1=True))
    assert close_code_sent(pair) == 1002


# -- handshake outcomes --------------------------------------------------------------


def test_server_reject_reaches_the_client() -> None:
    client = ClientConnection("example.com", "/", compression=None)
    server = ServerConnection()
    server.receive_data(flush(client))
    (request,) = server.events_received()
    assert isinstance(request, Request) and request.is_upgrade
    server.send(Reject(403, body=b"go away"))
    assert server.state is State.CLOSED and server.close_transport
    client.receive_data(flush(server))
    (reject,) = client.events_received()
    assert isinstance(reject, Reject) and reject.status == 403 and reject.body == b"go away"
    assert client.state is State.CLOSED
    with pytest.raises(InvalidState):
        server.send(Accept())


def test_malformed_request_is_answered_by_the_core() -> None:
    server = ServerConnection()
    server.receive_data(b"GARBAGE\r\n\r\n")
    assert server.events_received() == []
    assert isinstance(server.failure, InvalidHandshake)
    assert flush(server).startswith(b"HTTP/1.1 400 ")
    assert server.state is State.CLOSED and server.close_transport


def test_plain_get_is_a_request_with_an_error() -> None:
    server = ServerConnection()
    server.receive_data(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
    (request,) = server.events_received()
    assert isinstance(request, Request) and not request.is_upgrade
    assert request.error is not None and request.error.status == 426
    with pytest.raises(LocalProtocolError):
        server.send(Accept())


def test_frames_sent_with_the_request_wait_for_accept() -> None:
    client = ClientConnection("example.com", "/", compression=None)
    client_bytes = flush(client)
    # A client may not send frames before the 101 (§4.1), but a server should
    # cope with a pipelining one: the frames are read once it accepts.
    server = ServerConnection()
    server.receive_data(client_bytes + masked(Opcode.TEXT, b"early"))
    assert [type(e) for e in server.events_received()] == [Request]
    server.send(Accept())
    assert server.events_received() == [TextMessage("early")]


def test_unbounded_data_before_accept_is_refused() -> None:
    client = ClientConnection("example.com", "/", compression=None)
    server = ServerConnection(limits=Limits(max_handshake_body=1000))
    server.receive_data(flush(client))
    server.receive_data(b"x" * 2000)
    assert server.state is State.CLOSED and server.close_transport
    assert isinstance(server.failure, InvalidHandshake)


def test_client_eof_during_handshake_fails() -> None:
    client = ClientConnection("example.com", "/")
    client.receive_data(b"HTTP/1.1 101 Switching")
    client.receive_eof()
    assert isinstance(client.failure, InvalidHandshake)
    assert client.state is State.CLOSED and client.close_transport
    assert client.events_received() == []


def test_client_refuses_a_bad_accept_key() -> None:
    client = ClientConnection("example.com", "/")
    flush(client)
    client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
    )
    assert isinstance(client.failure, InvalidHandshake)
    assert client.state is State.CLOSED
    with pytest.raises(InvalidState):
        client.send(TextMessage("no"))


def test_frames_in_the_same_packet_as_the_101() -> None:
    client = ClientConnection("example.com", "/", compression=None)
    server = ServerConnection()
    server.receive_data(flush(client))
    server.events_received()
    server.send(Accept())
    server.send(TextMessage("first"))
    client.receive_data(flush(server))
    events = client.events_received()
    assert [type(e) for e in events] == [Accept, TextMessage]
    assert events[1] == TextMessage("first")


def test_sending_before_the_handshake_is_refused() -> None:
    client = ClientConnection("example.com", "/")
    with pytest.raises(InvalidState):
        client.send(TextMessage("too soon"))
    with pytest.raises(LocalProtocolError):
        client.send(Accept())
    client.fail(1011)
    assert client.state is State.CLOSED and client.close_transport


@pytest.mark.parametrize("split", [3, 5, 8, 9])
def test_invalid_utf8_fails_fast_inside_a_frame(split: int) -> None:
    # Autobahn 6.4.3: one frame sent in chops; the invalid part must close
    # the connection before the rest of the frame arrives.
    pair = ConnectionPair()
    payload = b"ok\xce\xba" + b"\xf4\x90\x80\x80" + b"tail"
    frame = masked(Opcode.TEXT, payload)
    pair.server.receive_data(frame[: 6 + 4])  # header + key + "ok" + a valid 2-byte char
    assert pair.server.failure is None
    pair.server.receive_data(frame[6 + 4 : 6 + split + 2])
    if split + 2 > 6:
        assert pair.server.failure is not None
        assert close_code_sent(pair) == 1007
    else:
        assert pair.server.failure is None


def test_partial_check_follows_the_message_decoder_across_frames() -> None:
    pair = ConnectionPair()
    euro = "€".encode()
    first = masked(Opcode.TEXT, b"a" + euro[:1], fin=False)
    second = masked(Opcode.CONT, euro[1:] + b"b" * 50)
    pair.server.receive_data(first + second[:8])  # the continuation's first bytes finish the €
    assert pair.server.failure is None
    pair.server.receive_data(second[8:])
    assert pair.server.events_received() == [TextMessage("a€" + "b" * 50)]


def test_partial_text_checked_once_per_byte_and_valid_when_whole() -> None:
    pair = ConnectionPair()
    text = "ünïcödé " * 2000
    frame = masked(Opcode.TEXT, text.encode())
    for i in range(0, len(frame), 1000):
        pair.server.receive_data(frame[i : i + 1000])
    assert pair.server.events_received() == [TextMessage(text)]
    assert pair.server.failure is None


# -- deferred failure: answer the messages before a violation first ---------------


def _deferring_pair() -> ConnectionPair:
    pair = ConnectionPair()
    pair.server.defer_failure = True
    return pair


def test_violation_after_messages_waits_for_commit() -> None:
    pair = _deferring_pair()
    pair.server.receive_data(masked(Opcode.TEXT, b"first") + b"\xa1\x80abcd" + masked(Opcode.PING, b""))
    assert pair.server.events_received() == [TextMessage("first")]
    assert pair.server.failure_pending and pair.server.state is State.OPEN
    assert flush(pair.server) == b""
    pair.server.send(TextMessage("first"))  # the answer goes out before the Close
    pair.server.receive_data(masked(Opcode.TEXT, b"ignored"))  # nothing after a violation counts
    assert pair.server.events_received() == []
    pair.server.commit_failure()
    frames = server_frames(pair)
    assert [(f[2], f[3][:2]) for f in frames] == [(Opcode.TEXT, b"fi"), (Opcode.CLOSE, b"\x03\xea")]
    assert isinstance(pair.server.failure, RemoteProtocolError)
    assert not pair.server.failure_pending and pair.server.close_transport
    pair.server.commit_failure()  # idempotent
    assert flush(pair.server) == b""


def test_violation_without_messages_fails_at_once_even_when_deferring() -> None:
    pair = _deferring_pair()
    pair.server.receive_data(b"\xa1\x80abcd")
    assert not pair.server.failure_pending
    assert close_code_sent(pair) == 1002


def test_eof_commits_a_pending_failure() -> None:
    pair = _deferring_pair()
    pair.server.receive_data(masked(Opcode.BINARY, b"x") + masked(Opcode.TEXT, b"\xff"))
    assert pair.server.failure_pending
    pair.server.receive_eof()
    assert close_code_sent(pair) == 1007
    assert pair.server.closed_error().code == 1007


def test_client_partial_invalid_text_fails_cleanly() -> None:
    # Found by fuzzing: a view of the buffer outlived the failure (BufferError).
    pair = ConnectionPair()
    pair.client.receive_data(b"\x81\x05\xff")
    assert isinstance(pair.client.failure, RemoteProtocolError)
    assert pair.client.failure.close_code == 1007


def test_data_pipelined_with_the_request_is_bounded_at_once() -> None:
    # Found by fuzzing: bytes after the request head skipped the early-data limit.
    client = ClientConnection("example.com", "/", compression=None)
    server = ServerConnection(limits=Limits(max_handshake_body=1000))
    server.receive_data(flush(client) + b"\x00" * 5000)
    assert server.state is State.CLOSED and server.close_transport
    assert isinstance(server.failure, InvalidHandshake)


# -- the fast paths: send_message, plain_messages, sends_plain_frames --------------


def _unmask_client_frames(wire: bytes) -> list[tuple[bool, bool, int, bytes]]:
    return list(FrameParser(expect_masked=True, max_payload=None).parse(bytearray(wire)))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 4095, 4096, 65535, 65536, 70000])
def test_send_message_frames_as_send_does(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pair = ConnectionPair()
    parts = pair.server.send_message(payload)
    pair.server.send(BytesMessage(payload))
    assert b"".join(bytes(p) for p in parts) == flush(pair.server)
    # Small frames come whole (one write); large ones keep the payload uncopied.
    assert len(parts) == (1 if size < 4096 else 2)
    if size >= 4096:
        assert parts[1] is payload
    # A client masks: a fresh key each time, the same frame once unmasked.
    sent = b"".join(bytes(p) for p in pair.client.send_message(payload))
    assert _unmask_client_frames(sent) == [(True, False, Opcode.BINARY, payload)]
    assert pair.server.receive_data(sent) is None
    assert pair.server.events_received() == [BytesMessage(payload)]


def test_send_message_sends_str_as_text_and_accepts_any_bytes_like() -> None:
    pair = ConnectionPair()
    assert pair.server.send_message("héllo") == [b"\x81\x06" + "héllo".encode()]
    assert pair.server.send_message(memoryview(b"ab")) == [b"\x82\x02ab"]
    assert pair.server.send_message(bytearray(b"cd")) == [b"\x82\x02cd"]
    pair.client.receive_data(b"\x81\x06" + "héllo".encode())
    assert pair.client.events_received() == [TextMessage("héllo")]


def test_send_message_compresses_and_orders_after_queued_frames() -> None:
    options = DeflateOptions()
    pair = ConnectionPair(client_compression=options, server_compression=options)
    text = "compressible " * 100
    for _ in range(2):  # the second message reuses the compression context
        parts = pair.server.send_message(text)
        wire = b"".join(bytes(p) for p in parts)
        assert wire[0] == 0xC1 and len(wire) < len(text)  # RSV1: compressed
        pair.client.receive_data(wire)
        assert pair.client.events_received() == [TextMessage(text)]
    # A Pong queued by the core goes out first.
    pair.client.send(Ping(b"p"))
    pair.to_server()
    wire = b"".join(bytes(p) for p in pair.server.send_message(b"after"))
    assert [
        frame[2]
        for frame in FrameParser(expect_masked=False, max_payload=None, allow_rsv1=True).parse(
            bytearray(wire)
        )
    ] == [Opcode.PONG, Opcode.BINARY]


def test_send_message_refuses_what_send_refuses() -> None:
    client = ClientConnection("example.com", "/")
    with pytest.raises(InvalidState):
        client.send_message(b"too soon")
    pair = ConnectionPair()
    pair.server.send(BytesMessage(b"a", fin=False))
    with pytest.raises(LocalProtocolError, match="fragmented"):
        pair.server.send_message(b"b")
    pair.server.send(BytesMessage(b"c"))
    assert flush(pair.server) == b"\x02\x01a\x80\x01c"
    assert pair.server.send_message(b"d") == [b"\x82\x01d"]
    pair.server.send(Close())
    with pytest.raises(InvalidState):
        pair.server.send_message(b"late")


def test_plain_messages_come_as_str_and_bytes() -> None:
    pair = ConnectionPair()
    pair.server.plain_messages = True
    pair.client.send(TextMessage("t"))
    pair.client.send(BytesMessage(b"b"))
    pair.client.send(TextMessage("fr", fin=False))
    pair.client.send(TextMessage("ag"))
    pair.client.send(BytesMessage(b"fr", fin=False))
    pair.client.send(BytesMessage(b"ag"))
    pair.client.send(Ping(b"p"))
    events = pair.to_server()
    assert events == ["t", b"b", "frag", b"frag", Ping(b"p")]
    assert [type(event) for event in events[:4]] == [str, bytes, str, bytes]


def test_plain_compressed_messages() -> None:
    options = DeflateOptions()
    pair = ConnectionPair(client_compression=options, server_compression=options)
    pair.server.plain_messages = True
    pair.client.send(TextMessage("z" * 1000))
    pair.client.send(BytesMessage(b"y" * 1000))
    assert pair.to_server() == ["z" * 1000, b"y" * 1000]


def test_sends_plain_frames_only_when_the_shared_frame_is_right() -> None:
    pair = ConnectionPair()
    assert pair.server.sends_plain_frames(10)
    assert not pair.client.sends_plain_frames(10)  # a client masks every frame
    pair.server.send(BytesMessage(b"a", fin=False))
    flush(pair.server)
    assert not pair.server.sends_plain_frames(10)  # inside a fragmented message
    pair.server.send(BytesMessage(b"b"))
    assert not pair.server.sends_plain_frames(10)  # its frame is still queued
    flush(pair.server)
    assert pair.server.sends_plain_frames(10)
    pair.client.send(Ping(b"p"))
    pair.to_server()
    assert not pair.server.sends_plain_frames(10)  # a Pong is queued before it
    flush(pair.server)
    pair.server.send(Close())
    assert not pair.server.sends_plain_frames(10)
    options = DeflateOptions(min_size=100)
    compressed = ConnectionPair(client_compression=options, server_compression=options)
    assert compressed.server.sends_plain_frames(99)
    assert not compressed.server.sends_plain_frames(100)  # this one would be compressed


def test_frames_split_anywhere_and_fed_as_any_bytes_like() -> None:
    pair = ConnectionPair()
    wire = b"".join(masked(Opcode.BINARY, bytes([i]) * (i * 37)) for i in range(1, 8)) + masked(
        Opcode.TEXT, b"fin"
    )
    for step in (1, 2, 7, 100, 1000):
        for kind in (bytes, bytearray, memoryview):
            for i in range(0, len(wire), step):
                pair.server.receive_data(kind(wire[i : i + step]))
            expected = [BytesMessage(bytes([i]) * (i * 37)) for i in range(1, 8)] + [TextMessage("fin")]
            assert pair.server.events_received() == expected


def test_frames_after_a_close_are_not_parsed() -> None:
    pair = ConnectionPair()
    pair.server.receive_data(masked(Opcode.CLOSE, b"\x03\xe8") + masked(Opcode.TEXT, b"late") + b"\x83\x00")
    events = pair.server.events_received()
    assert events == [Close(1000, "")]
    assert pair.server.failure is None  # the reserved opcode after the Close was never looked at


_WIRE_PIECES = st.sampled_from(
    [
        masked(Opcode.TEXT, b"text"),
        masked(Opcode.BINARY, b"\x00" * 200),
        masked(Opcode.TEXT, b"fr", fin=False),
        masked(Opcode.CONT, b"ag"),
        masked(Opcode.PING, b"ping"),
        masked(Opcode.PONG, b"pong"),
        masked(Opcode.CLOSE, b"\x03\xe8"),
        masked(Opcode.TEXT, b"\xff"),  # invalid UTF-8
        b"\x81\x01x",  # unmasked
        b"\x83\x80abcd",  # reserved opcode
    ]
)


@given(st.lists(_WIRE_PIECES, max_size=6), st.integers(1, 50), st.booleans())
def test_receiving_queues_output_only_with_another_event_or_a_failure(
    pieces: list[bytes], step: int, defer: bool
) -> None:
    # The promise receive_data() makes to drivers that skip data_to_send().
    pair = ConnectionPair()
    server = pair.server
    server.defer_failure = defer
    server.plain_messages = True
    wire = b"".join(pieces)
    for i in range(0, len(wire), step):
        server.receive_data(wire[i : i + step])
        events = server.events_received()
        output = flush(server)
        if output:
            others = [event for event in events if not isinstance(event, (str, bytes))]
            assert others or server.state is not State.OPEN or server.failure_pending


def test_rsv1_on_a_continuation_frame_is_1002() -> None:
    options = DeflateOptions()
    pair = ConnectionPair(client_compression=options, server_compression=options)
    deflate = zlib.compressobj(wbits=-15)
    start = deflate.compress(b"hello") + deflate.flush(zlib.Z_SYNC_FLUSH)
    pair.server.receive_data(
        masked(Opcode.TEXT, start, fin=False, rsv1=True) + masked(Opcode.CONT, b"x", rsv1=True)
    )
    assert pair.server.failure is not None and "continuation" in str(pair.server.failure)
    assert close_code_sent(pair) == 1002
