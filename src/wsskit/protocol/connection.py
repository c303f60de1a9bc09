"""The sans-I/O WebSocket connection: bytes in, events out; events in, bytes out.

The contract (shared with h11, wsproto and websockets)::

    conn.receive_data(data)      # bytes from the network
    conn.receive_eof()           # the peer closed its side
    conn.events_received()       # -> [Request | Accept | Reject | TextMessage | ...]
    conn.send(event)             # TextMessage, BytesMessage, Ping, Pong, Close, Accept, Reject
    conn.data_to_send()          # -> [bytes, ...] for the transport's writelines
    conn.close_transport         # True once the transport should be closed

A peer's violation never raises out of :meth:`Connection.receive_data`: the
core queues the Close frame (or the HTTP error response) with the right code,
records the reason in :attr:`Connection.failure` and discards further input.
The core answers Pings (unless ``auto_pong`` is off) and Close frames itself.

With ``defer_failure=True`` a violation found after valid messages does not
fail the connection at once: the core returns those messages, reads nothing
more, and :attr:`Connection.failure_pending` turns true until the I/O layer
calls :meth:`Connection.commit_failure` (once the application has read the
messages and had the chance to answer them).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Sequence

from ..exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshake,
    InvalidState,
    LocalProtocolError,
    PayloadTooBig,
    RemoteProtocolError,
    closed_exception,
)
from .deflate import DeflateOptions, PerMessageDeflate
from .events import Accept, BytesMessage, Close, Event, Ping, Pong, Reject, Request, TextMessage
from .frames import (
    MAX_CONTROL_PAYLOAD,
    Opcode,
    compressed_limit,
    decode_close,
    encode_close,
    encode_frame,
    mask_key,
    parse_frames,
    raise_violation,
)
from .handshake import ClientHandshake, ServerHandshake
from .headers import HeadersLike
from .limits import Limits
from .mask import apply_mask
from .state import State

__all__ = ["Connection", "ClientConnection", "ServerConnection", "State"]

# The states as module constants: reading State.OPEN goes through the
# Enum metaclass's attribute hook, which costs as much as a function call
# on the hot paths.
_CONNECTING = State.CONNECTING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CONT = Opcode.CONT.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

# First header bytes of the frames the receive loop handles inline: a whole
# message in one final, uncompressed text or binary frame.
_WHOLE_TEXT = 0x80 | _TEXT
_WHOLE_BINARY = 0x80 | _BINARY

# Below this size send_message() joins header and payload into one bytes
# object (one write); larger payloads stay apart and are not copied.
_JOIN_UNDER = 4096

_pack_header_16 = struct.Struct("!BBH").pack
_pack_header_64 = struct.Struct("!BBQ").pack

# The 2-byte headers of whole unmasked messages of 0 to 125 bytes, by length.
_TEXT_HEADERS = tuple(bytes((_WHOLE_TEXT, length)) for length in range(126))
_BINARY_HEADERS = tuple(bytes((_WHOLE_BINARY, length)) for length in range(126))


class Connection:
    """The state shared by both roles; use :class:`ClientConnection` or :class:`ServerConnection`."""

    # Slots keep an idle connection small (no per-instance dict of some forty
    # entries); "__dict__" still lets callers and tests add attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_allow_rsv1",
        "_buffer",
        "_events",
        "_expect_masked",
        "_failed_locally",
        "_frame_limit",
        "_in_compressed",
        "_in_decoder",
        "_in_frames",
        "_in_opcode",
        "_in_parts",
        "_in_size",
        "_max_payload",
        "_out",
        "_out_compressed",
        "_out_opcode",
        "_pending_failure",
        "_pmd",
        "_probe",
        "auto_pong",
        "close_received",
        "close_sent",
        "close_transport",
        "defer_failure",
        "extensions",
        "failure",
        "failure_pending",
        "limits",
        "plain_messages",
        "state",
        "subprotocol",
    )

    is_client: bool = False

    def __init__(
        self, *, limits: Limits, compression: DeflateOptions | None, defer_failure: bool = False
    ) -> None:
        self.state = _CONNECTING
        self.defer_failure = defer_failure
        #: Answer each Ping with a Pong at once (RFC 6455 §5.5.2). A driver
        #: that limits how many Pings it answers sets it to False and sends
        #: the Pongs it chooses; §5.5.3 allows skipping all but the latest.
        self.auto_pong = True
        #: Give whole received messages as plain ``str`` (text) and ``bytes``
        #: (binary) in :meth:`events_received` instead of :class:`TextMessage`
        #: and :class:`BytesMessage` events: an object less per message for a
        #: driver that only wants the data. Other events are unchanged.
        self.plain_messages = False
        # A violation waiting for commit_failure() (defer_failure only).
        self._pending_failure: RemoteProtocolError | None = None
        #: True while a violation waits for :meth:`commit_failure`
        #: (``defer_failure`` only). Read it; the core sets it.
        self.failure_pending = False
        self.limits = limits
        self.subprotocol: str | None = None
        self.extensions: tuple[str, ...] = ()
        self.close_received: Close | None = None
        self.close_sent: Close | None = None
        #: Why the core failed the connection: a HandshakeError or a ProtocolError.
        self.failure: Exception | None = None
        # True once fail() closed the connection on a local decision.
        self._failed_locally = False
        #: True once the transport should be closed after writing what is
        #: queued. RFC 6455 §7.1.1: the server closes the TCP connection
        #: first, so a client's flag turns true only at EOF (its I/O layer
        #: aborts after a timeout when the server never closes). Read it; the
        #: core sets it.
        self.close_transport = False
        self._buffer = bytearray()
        self._events: list[Event | str | bytes] = []
        self._out: list[bytes | bytearray | memoryview] = []
        self._pmd: PerMessageDeflate | None = None
        self._frame_limit = limits.frame_limit
        # How the next frame is parsed (see frames.parse_frames): clients
        # mask, servers do not; RSV1 once permessage-deflate is on; the
        # payload limit, lowered to what a fragmented message has left.
        self._expect_masked = not self.is_client
        self._allow_rsv1 = False
        self._max_payload = self._frame_limit
        # The message being received: its opcode (None between messages),
        # whether it is compressed, its parts, size so far and frame count.
        self._in_opcode: int | None = None
        self._in_compressed = False
        self._in_parts: list[bytes] | list[str] = []
        self._in_size = 0
        self._in_frames = 0
        self._in_decoder: codecs.IncrementalDecoder | None = None
        # The message being sent in fragments: its opcode and compression.
        self._out_opcode: int | None = None
        self._out_compressed = False
        # The UTF-8 check of a text frame still arriving: (decoder, bytes checked).
        self._probe: tuple[codecs.IncrementalDecoder, int] | None = None

    # -- the contract -------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the network.

        Bytes to send are queued meanwhile only along with an event that is
        not a message (the Pong for a :class:`Ping`, the reply to a
        :class:`Close`, the answer to a bad :class:`Request`) or when the
        connection fails (the state is no longer OPEN, or
        :attr:`failure_pending` is set): a driver may skip
        :meth:`data_to_send` otherwise.
        """
        state = self.state
        if state is _CONNECTING:
            self._receive_handshake(data)
            return
        # (One test, through a local: mypy would take the attributes for
        # constant over the rest of this method.)
        stopped = state is _CLOSED or self.close_received is not None or self._pending_failure is not None
        if stopped:
            return  # RFC 6455 §5.5.1: nothing after a Close frame (or a violation) counts.
        buffer = self._buffer
        if buffer:
            buffer += data
            data = buffer
        # else nothing is left over from earlier: parse straight from
        # ``data``, and keep only what remains of it.
        events = self._events
        start = 0
        size = len(data)
        try:
            while True:
                frames, end, error = parse_frames(
                    data, start, self._expect_masked, self._allow_rsv1, self._max_payload
                )
                if end != start:
                    start = end
                    self._probe = None
                for first, payload in frames:
                    if first == _WHOLE_BINARY and self._in_opcode is None:
                        # The common cases, inline: a whole uncompressed
                        # message in one frame, already within the frame limit
                        # (which is at most the message limit).
                        events.append(payload if self.plain_messages else BytesMessage(payload))
                    elif first == _WHOLE_TEXT and self._in_opcode is None:
                        text = _decode_text(payload)
                        events.append(text if self.plain_messages else TextMessage(text))
                    elif first & 0x08:
                        self._on_control(first & 0x0F, payload)
                    else:
                        self._on_data(first, payload)
                if error is not None:
                    raise_violation(error)
                if start == size or not frames or self.close_received is not None:
                    break
            if self.close_received is not None:
                self._discard_input()
            elif start != size or data is buffer:
                self._keep_rest(data, start)
        except RemoteProtocolError as exc:
            if self.defer_failure and events:
                # Let the messages before the violation be read (and answered)
                # first; nothing after it counts (RFC 6455 §7.1.7).
                self._pending_failure = exc
                self.failure_pending = True
                self._discard_input()
            else:
                self.failure = exc
                self._fail_with_close(exc.close_code, str(exc))

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        # Bytes before the connection is open. The roles parse the handshake
        # here; this keeps what follows it until the connection opens.
        self._buffer += data
        self._check_early_data()

    def _check_early_data(self) -> None:
        # RFC 6455 §4.1: frames wait for the handshake's answer; a peer that
        # streams data before it gets no unbounded buffer.
        if len(self._buffer) > self.limits.max_handshake_body:
            self.failure = InvalidHandshake("data sent before the handshake completed")
            self.state = _CLOSED
            self.close_transport = True
            self._buffer.clear()

    def receive_eof(self) -> None:
        """Tell the core the peer closed its side of the transport."""
        self.commit_failure()
        self.close_transport = True
        if self.state is not _CLOSED:
            self.state = _CLOSED
            self._discard_input()

    def events_received(self) -> list[Event | str | bytes]:
        """Return and clear the events received since the last call.

        Whole messages come as :class:`TextMessage` and :class:`BytesMessage`
        events, or as plain ``str`` and ``bytes`` with :attr:`plain_messages`.
        """
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes | bytearray | memoryview]:
        """Return and clear the bytes to write, in order."""
        out = self._out
        self._out = []
        return out

    def send(self, event: Event) -> None:
        """Queue ``event`` for sending.

        Raises :class:`InvalidState` when the state forbids it (data after a
        Close, anything before the handshake) and :class:`LocalProtocolError`
        for an event the protocol forbids (an oversized control payload, an
        invalid close code, a fragment of the wrong type).
        """
        if isinstance(event, TextMessage):
            self._send_data(_TEXT, event.data.encode("utf-8"), event.fin)
        elif isinstance(event, BytesMessage):
            self._send_data(_BINARY, event.data, event.fin)
        elif isinstance(event, Ping):
            self._send_control(_PING, event.payload)
        elif isinstance(event, Pong):
            self._send_control(_PONG, event.payload)
        elif isinstance(event, Close):
            self._send_close(event)
        else:
            self._send_handshake(event)

    def send_message(
        self, data: str | bytes | bytearray | memoryview
    ) -> list[bytes | bytearray | memoryview]:
        """Frame ``data`` as one whole message and return everything there is to write.

        The same as ``send(TextMessage(data))`` for ``str`` or
        ``send(BytesMessage(data))`` for the others, then
        :meth:`data_to_send`, in one call: the fast path of a driver's send.
        A small uncompressed message comes as a single ``bytes`` object
        (header and payload joined); a larger one keeps its payload apart,
        uncopied.

        Raises :class:`InvalidState` unless the connection is open and
        :class:`LocalProtocolError` while a fragmented message is being sent.
        """
        if self.state is not _OPEN:
            raise InvalidState(f"cannot send data while the connection is {self.state.name}")
        if self._out_opcode is not None:
            raise LocalProtocolError("a fragmented message is being sent; finish it first")
        if type(data) is str:
            first = _WHOLE_TEXT
            headers = _TEXT_HEADERS
            payload: bytes | bytearray | memoryview = data.encode("utf-8")
        else:
            first = _WHOLE_BINARY
            headers = _BINARY_HEADERS
            payload = data  # type: ignore[assignment]
        if self._pmd is not None or self._out:
            # Maybe compressed, or after other frames: the general path.
            self._send_data(first & 0x0F, payload, True)
            return self.data_to_send()
        length = len(payload)
        if self.is_client:
            return _masked_frame(first, payload, length)
        # RFC 6455 §5.2: the length uses the shortest of the 7, 16 and 64-bit forms.
        if length < 126:
            return [headers[length] + payload]
        if length < _JOIN_UNDER:
            return [_pack_header_16(first, 126, length) + payload]
        if length < 0x10000:
            return [_pack_header_16(first, 126, length), payload]
        return [_pack_header_64(first, 127, length), payload]

    def sends_plain_frames(self, size: int) -> bool:
        """Tell whether a whole message of ``size`` bytes may go as the plain frame
        :func:`~wsskit.protocol.frames.encode_frame` makes (unmasked, uncompressed).

        True on an open server connection that is not sending a fragmented
        message, has nothing queued, and would not compress such a message.
        A driver may then write that frame, made once, to many connections
        (a broadcast) instead of calling :meth:`send_message` on each.
        """
        pmd = self._pmd
        return (
            self.state is _OPEN
            and not self.is_client
            and self._out_opcode is None
            and not self._out
            and (pmd is None or not pmd.should_compress(size))
        )

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection on a local decision (a timeout, an internal error).

        Queues a Close with ``code`` unless one was sent, then asks for the
        transport to be closed.
        """
        if self.state is _CONNECTING:
            self.state = _CLOSED
            self.close_transport = True
            return
        if self.close_sent is None and self.state is _OPEN:
            self._failed_locally = True
        self._fail_with_close(code, reason)

    def commit_failure(self) -> None:
        """Fail the connection for the violation that is pending, if any.

        Queues the Close frame with the violation's code, as
        :meth:`receive_data` does without ``defer_failure``.
        """
        exc = self._pending_failure
        if exc is not None:
            self._pending_failure = None
            self.failure_pending = False
            self.failure = exc
            self._fail_with_close(exc.close_code, str(exc))

    def closed_error(self) -> ConnectionClosed:
        """The exception for an operation on the closed connection.

        The code is the peer's close code; else the one we sent when we
        failed the connection (a violation, a timeout) or while we wait for
        the peer's reply; else 1006, as no Close frame was exchanged.
        """
        code, reason = self.close_status()
        return closed_exception(code, reason)

    def close_status(self) -> tuple[int, str]:
        """The (code, reason) that describe how the connection closed, as :meth:`closed_error`."""
        received = self.close_received
        if received is not None:
            return received.code, received.reason
        sent = self.close_sent
        if sent is not None and (self.failure is not None or self._failed_locally or self.state is _CLOSING):
            return sent.code, sent.reason
        return 1006, ""

    # -- receiving ------------------------------------------------------------

    def _keep_rest(self, data: bytes | bytearray | memoryview, start: int) -> None:
        # Keep the bytes of ``data`` from ``start`` on (a frame still
        # arriving), and check what has come of a text frame.
        buffer = self._buffer
        if data is buffer:
            del buffer[:start]
        else:
            with memoryview(data) as view:
                buffer += view[start:]
        if buffer and self.state is not _CLOSED:
            self._check_partial_text()

    def _check_partial_text(self) -> None:
        # RFC 6455 §8.1 asks to fail as soon as invalid UTF-8 is seen: check
        # the part of an uncompressed text frame that has arrived, instead of
        # waiting for its last byte. Each byte is checked once: the probe
        # remembers how far it got in the frame at the head of the buffer.
        buf = self._buffer
        if len(buf) < 2 or buf[0] & 0x40:
            return
        opcode = buf[0] & 0x0F
        if opcode == _TEXT:
            state = None
        elif opcode == _CONT and self._in_decoder is not None and not self._in_compressed:
            state = self._in_decoder.getstate()
        else:
            return
        length = buf[1] & 0x7F
        header = 2 if length < 126 else 4 if length == 126 else 10
        key: bytes | None = None
        if buf[1] & 0x80:
            header += 4
            if len(buf) < header:
                return
            key = bytes(buf[header - 4 : header])
        if self._probe is None:
            fresh: codecs.IncrementalDecoder = _Utf8Decoder()
            if state is not None:
                fresh.setstate(state)
            self._probe = (fresh, 0)
        decoder, done = self._probe
        start = header + done
        if len(buf) <= start:
            return
        # A copy, not a view: a view would pin the buffer (BufferError on the
        # clear() that failing does), even from a traceback.
        chunk = bytes(buf[start:])
        if key is not None:
            shift = done % 4
            chunk = apply_mask(chunk, key[shift:] + key[:shift])
        try:
            decoder.decode(chunk, False)
        except UnicodeDecodeError:
            raise RemoteProtocolError("text message is not valid UTF-8", 1007) from None
        self._probe = (decoder, len(buf) - header)

    def _on_data(self, first: int, payload: bytes) -> None:
        # A data frame the receive loop does not handle inline: part of a
        # fragmented message, or a compressed one. ``first`` is the first
        # header byte (FIN, RSV1, opcode).
        fin = bool(first & 0x80)
        rsv1 = bool(first & 0x40)
        opcode = first & 0x0F
        if opcode == _CONT:
            if self._in_opcode is None:
                raise RemoteProtocolError("continuation frame without a message to continue", 1002)
            if rsv1:
                raise RemoteProtocolError("RSV1 set on a continuation frame", 1002)
        else:
            if self._in_opcode is not None:
                raise RemoteProtocolError("new message started before the last one finished", 1002)
            self._in_opcode = opcode
            self._in_compressed = rsv1
            self._in_parts = []
            self._in_size = 0
            self._in_frames = 0
            self._in_decoder = _Utf8Decoder() if opcode == _TEXT else None
        self._in_frames += 1
        max_fragments = self.limits.max_fragments
        if max_fragments is not None and self._in_frames > max_fragments:
            raise PayloadTooBig(f"message spans more than {max_fragments} frames")
        max_size = self.limits.max_message_size
        if self._in_compressed:
            assert self._pmd is not None  # the parser refuses RSV1 without it
            budget = None if max_size is None else max_size - self._in_size
            data = self._pmd.decompress(payload, fin, budget)
        else:
            data = payload
            if max_size is not None and self._in_size + len(data) > max_size:
                raise PayloadTooBig(f"message exceeds the limit of {max_size} bytes")
        self._in_size += len(data)
        decoder = self._in_decoder
        if decoder is not None:
            # Checked fragment by fragment: invalid UTF-8 fails at the first
            # fragment that holds it, not at the end of the message (§8.1).
            try:
                text = decoder.decode(data, fin)
            except UnicodeDecodeError:
                raise RemoteProtocolError("text message is not valid UTF-8", 1007) from None
            self._in_parts.append(text)  # type: ignore[arg-type]
        else:
            self._in_parts.append(data)  # type: ignore[arg-type]
        if fin:
            parts = self._in_parts
            message: str | bytes
            if decoder is not None:
                message = "".join(parts)  # type: ignore[arg-type]
                self._events.append(message if self.plain_messages else TextMessage(message))
            else:
                message = b"".join(parts)  # type: ignore[arg-type]
                self._events.append(message if self.plain_messages else BytesMessage(message))
            self._in_opcode = None
            self._in_parts = []
            self._in_decoder = None
            self._max_payload = self._frame_limit
        else:
            self._set_frame_budget()

    def _set_frame_budget(self) -> None:
        # A continuation frame may carry only what the message limit has
        # left: refuse its header at once instead of buffering its payload.
        limit = self._frame_limit
        max_size = self.limits.max_message_size
        if self._in_compressed:
            self._max_payload = None if limit is None else compressed_limit(limit)
        elif max_size is not None:
            left = max_size - self._in_size
            self._max_payload = left if limit is None else min(limit, left)

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            # RFC 6455 §5.5.2: answer with a Pong carrying the same payload.
            if self.state is _OPEN and self.auto_pong:
                self._out.extend(encode_frame(_PONG, payload, mask=self.is_client))
            self._events.append(Ping(payload))
        elif opcode == _PONG:
            self._events.append(Pong(payload))
        else:
            code, reason = decode_close(payload)
            received = Close(code, reason)
            self.close_received = received
            if self.close_sent is None:
                # RFC 6455 §5.5.1: reply with a Close, echoing the code.
                reply = Close(code, "") if code != 1005 else Close(1005, "")
                self._out.extend(encode_frame(_CLOSE, encode_close(reply.code, ""), mask=self.is_client))
                self.close_sent = reply
            self.state = _CLOSED
            if not self.is_client:
                self.close_transport = True
            self._events.append(received)

    def _discard_input(self) -> None:
        self._buffer.clear()
        self._in_parts = []
        self._in_opcode = None
        self._in_decoder = None

    def _fail_with_close(self, code: int, reason: str) -> None:
        # RFC 6455 §7.1.7: _Fail the WebSocket Connection_: send a Close
        # (unless one was sent) and close the transport without waiting.
        if self.close_sent is None and self.state in (_OPEN, _CLOSING):
            reason = _truncate_reason(reason)
            self._out.extend(encode_frame(_CLOSE, encode_close(code, reason), mask=self.is_client))
            self.close_sent = Close(code, reason)
        self.state = _CLOSED
        self.close_transport = True
        self._discard_input()

    # -- sending ------------------------------------------------------------

    def _send_data(self, opcode: int, data: bytes | bytearray | memoryview, fin: bool) -> None:
        if self.state is not _OPEN:
            raise InvalidState(f"cannot send data while the connection is {self.state.name}")
        rsv1 = False
        if self._out_opcode is None:
            compressed = self._pmd is not None and self._pmd.should_compress(len(data))
            self._out_compressed = compressed
            rsv1 = compressed
            frame_opcode = opcode
        else:
            if opcode != self._out_opcode:
                raise LocalProtocolError("a fragmented message cannot change between text and bytes")
            frame_opcode = _CONT
        if self._out_compressed:
            assert self._pmd is not None
            data = self._pmd.compress(data, fin)
        self._out.extend(encode_frame(frame_opcode, data, fin=fin, rsv1=rsv1, mask=self.is_client))
        self._out_opcode = None if fin else opcode

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state is not _OPEN:
            raise InvalidState(f"cannot send a control frame while the connection is {self.state.name}")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("a control frame carries 125 bytes or less")
        self._out.extend(encode_frame(opcode, payload, mask=self.is_client))

    def _send_close(self, event: Close) -> None:
        if self.state is not _OPEN:
            raise InvalidState(f"cannot send a Close frame while the connection is {self.state.name}")
        payload = encode_close(event.code, event.reason)
        self._out.extend(encode_frame(_CLOSE, payload, mask=self.is_client))
        self.close_sent = event
        self.state = _CLOSING

    def _send_handshake(self, event: Event) -> None:
        raise LocalProtocolError(f"{type(event).__name__} cannot be sent by this side")

    def _open(
        self, pmd: PerMessageDeflate | None, subprotocol: str | None, extensions: tuple[str, ...]
    ) -> None:
        self.state = _OPEN
        self._pmd = pmd
        self._allow_rsv1 = pmd is not None
        self.subprotocol = subprotocol
        self.extensions = extensions


def _masked_frame(
    first: int, payload: bytes | bytearray | memoryview, length: int
) -> list[bytes | bytearray | memoryview]:
    # A client's whole message: RFC 6455 §5.3, masked with a fresh key.
    key = mask_key()
    masked = apply_mask(payload, key)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 0x10000:
        header = _pack_header_16(first, 0x80 | 126, length)
    else:
        header = _pack_header_64(first, 0x80 | 127, length)
    if length < _JOIN_UNDER:
        return [header + key + masked]
    return [header + key, masked]


def _decode_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("text message is not valid UTF-8", 1007) from None


def _truncate_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_CONTROL_PAYLOAD - 2:
        return reason
    return encoded[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore")


class ServerConnection(Connection):
    """The server side: a :class:`Request` event first, then :class:`Accept` or :class:`Reject`.

    Malformed HTTP (an unparseable head, an oversized line or header section)
    is answered by the core itself with 400, 414 or 431; a well-formed request
    that is not a valid upgrade comes out as a Request whose ``error`` holds
    the status to answer with, so the server may serve it as plain HTTP.
    """

    __slots__ = ("_handshake", "request")

    is_client = False

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        compression: DeflateOptions | None = None,
        defer_failure: bool = False,
    ) -> None:
        limits = limits if limits is not None else Limits()
        super().__init__(limits=limits, compression=compression, defer_failure=defer_failure)
        self._handshake = ServerHandshake(limits=limits, compression=compression)
        self.request: Request | None = None

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        if self.request is None:
            self._handshake.receive_data(data)
            try:
                request = self._handshake.next_request()
            except InvalidHandshake as exc:
                self.failure = exc
                self._out.append(ServerHandshake.error_response(exc))
                self.state = _CLOSED
                self.close_transport = True
                return
            if request is not None:
                self.request = request
                self._events.append(request)
                self._buffer += self._handshake.leftover
                self._check_early_data()
            return
        super()._receive_handshake(data)  # frames before our Accept wait for it

    def _send_handshake(self, event: Event) -> None:
        if self.state is not _CONNECTING or self.request is None:
            raise InvalidState("the handshake is answered once, after a Request")
        if isinstance(event, Accept):
            if self.request.error is not None:
                raise LocalProtocolError(f"cannot accept an invalid upgrade request: {self.request.error}")
            response, sent, pmd = self._handshake.accept(self.request, event)
            self._out.append(response)
            self._open(pmd, sent.subprotocol, sent.extensions)
            if self._buffer:
                self.receive_data(b"")  # the frames that came with the handshake
        elif isinstance(event, Reject):
            self._out.append(self._handshake.reject(event))
            self.state = _CLOSED
            self.close_transport = True
            self._buffer.clear()
        else:
            super()._send_handshake(event)


class ClientConnection(Connection):
    """The client side: the upgrade request is queued at once; then an :class:`Accept` or :class:`Reject`.

    ``host`` is the Host header's value (with a non-default port) and
    ``target`` the resource name (path and query).
    """

    __slots__ = ("_handshake", "request", "response")

    is_client = True

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        origin: str | None = None,
        compression: DeflateOptions | None = None,
        limits: Limits | None = None,
        defer_failure: bool = False,
    ) -> None:
        limits = limits if limits is not None else Limits()
        super().__init__(limits=limits, compression=compression, defer_failure=defer_failure)
        self._handshake = ClientHandshake(
            host,
            target,
            subprotocols=subprotocols,
            headers=headers,
            origin=origin,
            compression=compression,
            limits=limits,
        )
        self.response: Accept | Reject | None = None
        #: The upgrade request sent to the server.
        self.request: Request = self._handshake.request
        self._out.append(self._handshake.request_bytes())

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> None:
        self._handshake.receive_data(data)
        self._check_response()

    def receive_eof(self) -> None:
        """Tell the core the server closed its side."""
        if self.state is _CONNECTING:
            self._handshake.receive_eof()
            self._check_response()
        super().receive_eof()

    def _check_response(self) -> None:
        try:
            result = self._handshake.next_response()
        except HandshakeError as exc:
            self.failure = exc
            self.state = _CLOSED
            self.close_transport = True
            return
        if result is None:
            return
        if isinstance(result, Reject):
            self.response = result
            self.state = _CLOSED
            self.close_transport = True
            self._events.append(result)
            return
        accept, pmd = result
        self.response = accept
        self._open(pmd, accept.subprotocol, accept.extensions)
        self._events.append(accept)
        leftover = self._handshake.leftover
        if leftover:
            self._buffer += leftover
            self.receive_data(b"")  # the frames that came with the handshake
