"""The permessage-deflate extension (RFC 7692), sans I/O.

Two halves live here:

- negotiation: :func:`client_offer` builds the client's
  ``Sec-WebSocket-Extensions`` offer, :func:`accept_offer` picks and answers an
  offer on the server, :func:`accept_response` checks the server's answer on
  the client. Both sides end with a :class:`PerMessageDeflate` engine.
- the engine: :meth:`PerMessageDeflate.compress` and
  :meth:`PerMessageDeflate.decompress` turn one message fragment at a time into
  DEFLATE data and back. The connection decides which messages are compressed
  (RSV1) and passes each fragment through.

Window bits 8
-------------
RFC 7692 lets either side ask for a 256-byte LZ77 window
(``*_max_window_bits=8``), but zlib refuses to *compress* raw DEFLATE with a
256-byte window (``deflateInit2`` rejects ``windowBits=-8``; it had a bug with
windows smaller than its 262-byte lookahead). wsskit accepts 8 anyway and
compresses with a 512-byte window: zlib never emits a match distance larger than
``window size - 262`` (250 for 9 bits), so every stream it makes with 9 bits
decodes with a 256-byte window. The test suite checks this against zlib's own
8-bit inflater. Decompression honours 8 exactly, as zlib's inflater supports
it. (python-websockets declines 8 instead; Node's ``ws`` and the Autobahn
Testsuite, cases 13.3 and 13.5, use it.)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import NegotiationError, PayloadTooBig, RemoteProtocolError
from .headers import ExtensionOffer, format_extension

__all__ = [
    "EXTENSION_NAME",
    "DeflateOptions",
    "PerMessageDeflate",
    "client_offer",
    "accept_offer",
    "accept_response",
]

EXTENSION_NAME = "permessage-deflate"

# RFC 7692 §7.2.1 / §7.2.2: the empty stored block a sync flush ends with; the
# sender strips it from every message, the receiver appends it back.
_TAIL = b"\x00\x00\xff\xff"

# RFC 7692 §7.2.3.4: a sender flushing with a BFINAL block follows it with one
# 0x00 octet, so that the appended tail completes an (ignored) empty block.
_BFINAL_PAD = b"\x00"

# RFC 7692 §7.1.2.1: "a decimal integer value without leading zeroes between 8
# to 15, inclusive"; comparing strings rejects "08", "+9" and " 9" for free.
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}

_SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"


def _check_window_bits(name: str, value: int | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not 8 <= value <= 15:
        raise ValueError(f"{name} must be an integer from 8 to 15, not {value!r}")


def _check_tuning(compress_level: int, memory_level: int, min_size: int) -> None:
    if not -1 <= compress_level <= 9:
        raise ValueError(f"compress_level must be from -1 to 9, not {compress_level!r}")
    if not 1 <= memory_level <= 9:
        raise ValueError(f"memory_level must be from 1 to 9, not {memory_level!r}")
    if min_size < 0:
        raise ValueError(f"min_size must be 0 or more, not {min_size!r}")


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What this endpoint offers (client) or accepts (server).

    On a client:

    - ``server_no_context_takeover`` / ``server_max_window_bits``: ask the
      server to reset its compressor after each message / to use at most this
      window; a server that does not agree fails the handshake.
    - ``client_no_context_takeover``: promise to reset our compressor after
      each message (lets the server free its window between messages).
    - ``client_max_window_bits``: ``None`` offers the bare parameter, telling
      the server it may cap our window (RFC 7692 §7.1.2.2); a number caps our
      window ourselves and tells the server.

    On a server each field is something the server imposes:
    ``*_no_context_takeover`` is always granted or demanded,
    ``server_max_window_bits`` caps our window, and ``client_max_window_bits``
    caps the client's window when the client's offer allows it.

    ``compress_level``, ``memory_level`` and ``compress_window_bits`` tune
    our compressor, and need no negotiation: a sender may always use a
    smaller window than the peer allows (RFC 7692 §7.1.2.1). The defaults
    (a 4 KiB window, memory level 5) keep a compressor at about 32 KiB of
    zlib state where zlib's own (32 KiB, 8) take 256 KiB per connection, and
    compress JSON-like text about a fifth faster for a few percent more
    bytes. Messages shorter than ``min_size`` bytes are better sent
    uncompressed (RFC 7692 §6 lets every message choose). Raises
    :class:`ValueError` on out-of-range values.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    compress_level: int = 6
    memory_level: int = 5
    compress_window_bits: int = 12
    min_size: int = 0

    def __post_init__(self) -> None:
        _check_window_bits("server_max_window_bits", self.server_max_window_bits, optional=True)
        _check_window_bits("client_max_window_bits", self.client_max_window_bits, optional=True)
        _check_window_bits("compress_window_bits", self.compress_window_bits, optional=False)
        _check_tuning(self.compress_level, self.memory_level, self.min_size)


class PerMessageDeflate:
    """Compresses outgoing and decompresses incoming messages of one connection.

    ``local_*`` settings govern what we send, ``remote_*`` what we receive. All
    fragments of a message form one DEFLATE stream (RFC 7692 §7.2.1). With
    context takeover the LZ77 window carries over from one message to the
    next; without it the compressor or decompressor is dropped after each
    message and made again on the next one, which also frees its memory
    between messages.

    Raises :class:`ValueError` when a setting is out of range.
    """

    __slots__ = (
        "_decoder",
        "_encoder",
        "compress_level",
        "compress_window_bits",
        "is_client",
        "local_max_window_bits",
        "local_no_context_takeover",
        "memory_level",
        "min_size",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        is_client: bool,
        local_no_context_takeover: bool,
        remote_no_context_takeover: bool,
        local_max_window_bits: int,
        remote_max_window_bits: int,
        compress_level: int = 6,
        memory_level: int = 5,
        compress_window_bits: int = 12,
        min_size: int = 0,
    ) -> None:
        _check_window_bits("local_max_window_bits", local_max_window_bits, optional=False)
        _check_window_bits("remote_max_window_bits", remote_max_window_bits, optional=False)
        _check_window_bits("compress_window_bits", compress_window_bits, optional=False)
        _check_tuning(compress_level, memory_level, min_size)
        self.is_client = is_client
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.compress_level = compress_level
        self.memory_level = memory_level
        #: Our compressor's window: at most the negotiated local_max_window_bits.
        self.compress_window_bits = compress_window_bits
        self.min_size = min_size
        # Made on first use: a connection that never sends (or never receives)
        # a compressed message never pays for a zlib state.
        self._encoder: zlib._Compress | None = None
        self._decoder: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(is_client={self.is_client}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_max_window_bits={self.local_max_window_bits}, "
            f"remote_max_window_bits={self.remote_max_window_bits})"
        )

    def should_compress(self, size: int) -> bool:
        """Tell whether a message of ``size`` bytes is worth compressing."""
        return size >= self.min_size

    def compress(self, data: bytes | bytearray | memoryview, fin: bool = True) -> bytes:
        """Compress one fragment of an outgoing message and return the payload.

        Every fragment ends with a sync flush so the peer can decode it as it
        arrives. On the last fragment (``fin``) the trailing empty stored block
        ``00 00 ff ff`` is removed (RFC 7692 §7.2.1), and without local context
        takeover the compressor is dropped so the next message starts afresh.
        """
        encoder = self._encoder
        if encoder is None:
            # A window smaller than the peer allows is always fine (the
            # peer's decompressor holds more than we refer back to). zlib
            # cannot compress raw DEFLATE with 8 bits; 9 is safe for an
            # 8-bit peer (see the module docstring).
            wbits = max(min(self.local_max_window_bits, self.compress_window_bits), 9)
            encoder = self._encoder = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, -wbits, self.memory_level
            )
        head = encoder.compress(data)
        # Z_SYNC_FLUSH always ends with an empty stored block (00 00 ff ff),
        # so the flush output holds the whole tail and stripping it is a slice.
        tail = encoder.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            # RFC 7692 §7.2.1 step 3: remove the 4 octets 00 00 ff ff.
            tail = tail[: -len(_TAIL)]
            if self.local_no_context_takeover:
                self._encoder = None
        return head + tail if head else tail

    def decompress(self, data: bytes | bytearray | memoryview, fin: bool, max_size: int | None) -> bytes:
        """Decompress one fragment of an incoming compressed message.

        ``max_size`` is how many bytes this call may still produce (``None``:
        no limit). Output is bounded while it is made, so a small, highly
        compressed payload (a "bomb") costs no more memory than the limit.
        On the last fragment (``fin``) the empty stored block stripped by the
        sender is appended back (RFC 7692 §7.2.2); without remote context
        takeover the decompressor is dropped afterwards.

        Raises :class:`~wsskit.exceptions.PayloadTooBig` (close 1009) as soon as
        the output would exceed ``max_size``;
        :class:`~wsskit.exceptions.RemoteProtocolError` with close code 1007
        when the data is not valid DEFLATE, refers back into history beyond
        the negotiated window (as far as zlib keeps it), or has anything but
        the RFC 7692 §7.2.3.4 padding after a final (BFINAL) block;
        :class:`ValueError` when ``max_size`` is negative.
        """
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be 0 or more, not {max_size!r}")
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = zlib.decompressobj(-self.remote_max_window_bits)
        try:
            out = self._inflate(decoder, data, max_size)
            if fin:
                more = self._inflate(decoder, _TAIL, None if max_size is None else max_size - len(out))
                if more:
                    out += more
        except zlib.error as exc:
            self._decoder = None
            raise RemoteProtocolError(f"invalid compressed data: {exc}", 1007) from exc
        except RemoteProtocolError:
            self._decoder = None
            raise
        if decoder.eof:
            self._check_after_final_block(decoder, fin)
        if fin and (self.remote_no_context_takeover or decoder.eof):
            # After a BFINAL block the stream is over and zlib cannot continue
            # it; the next message starts with an empty window. A peer that
            # flushes with BFINAL and still refers back across messages gets
            # 1007 ("invalid distance too far back") rather than wrong data.
            self._decoder = None
        return out

    @staticmethod
    def _inflate(
        decoder: zlib._Decompress, data: bytes | bytearray | memoryview, budget: int | None
    ) -> bytes:
        # Ask zlib for at most one byte beyond the budget: getting that byte
        # proves the message is too big without inflating any further.
        # (max_length=0 would mean "unbounded", hence budget + 1 >= 1.)
        out = decoder.decompress(data, 0 if budget is None else budget + 1)
        if budget is not None and len(out) > budget:
            raise PayloadTooBig("decompressed message exceeds the size limit")
        return out

    def _check_after_final_block(self, decoder: zlib._Decompress, fin: bool) -> None:
        # Once a BFINAL block ends the stream, zlib files every later byte
        # under unused_data. RFC 7692 §7.2.3.4 allows one 0x00 octet there
        # from the peer, then our own appended tail; anything else is garbage.
        extra = decoder.unused_data
        allowed = (_BFINAL_PAD + _TAIL, _TAIL) if fin else (_BFINAL_PAD, b"")
        if extra not in allowed:
            self._decoder = None
            raise RemoteProtocolError("data after the final DEFLATE block", 1007)


@dataclass(slots=True)
class _Params:
    """The parameters of one offer or response, checked and typed."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    # Present with no value is meaningful in an offer (RFC 7692 §7.1.2.2).
    client_max_window_bits_present: bool = False
    client_max_window_bits: int | None = None


def _parse_params(params: Sequence[tuple[str, str | None]], *, response: bool) -> _Params:
    """Check the parameters of an offer (or a response) and return them.

    Raises :class:`ValueError` naming the first problem: an unknown or
    repeated parameter, or a value that is missing, present where none is
    allowed, or not 8 to 15 (RFC 7692 §7.1).
    """
    parsed = _Params()
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            raise ValueError(f"duplicate parameter {key!r}")
        seen.add(key)
        if key in (_SERVER_NO_CONTEXT_TAKEOVER, _CLIENT_NO_CONTEXT_TAKEOVER):
            # RFC 7692 §7.1.1: these parameters have no value.
            if value is not None:
                raise ValueError(f"parameter {key!r} takes no value")
            if key == _SERVER_NO_CONTEXT_TAKEOVER:
                parsed.server_no_context_takeover = True
            else:
                parsed.client_no_context_takeover = True
        elif key == _SERVER_MAX_WINDOW_BITS:
            parsed.server_max_window_bits = _parse_window_bits(key, value)
        elif key == _CLIENT_MAX_WINDOW_BITS:
            parsed.client_max_window_bits_present = True
            # RFC 7692 §7.1.2.2: a bare client_max_window_bits is an offer's
            # "I can cap my window"; a response must carry the cap itself.
            if value is not None or response:
                parsed.client_max_window_bits = _parse_window_bits(key, value)
        else:
            raise ValueError(f"unknown parameter {key!r}")
    return parsed


def _parse_window_bits(key: str, value: str | None) -> int:
    bits = _WINDOW_BITS.get(value) if value is not None else None
    if bits is None:
        raise ValueError(f"parameter {key!r} needs a value from 8 to 15, not {value!r}")
    return bits


def _cap(requested: int | None, cap: int | None) -> int | None:
    """The smaller of two optional window sizes."""
    if requested is None:
        return cap
    if cap is None:
        return requested
    return min(requested, cap)


def client_offer(options: DeflateOptions) -> str:
    """Return the ``Sec-WebSocket-Extensions`` value a client sends.

    For the default options: ``'permessage-deflate; client_max_window_bits'``.
    """
    params: list[tuple[str, str | None]] = []
    if options.server_no_context_takeover:
        params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
    if options.client_no_context_takeover:
        params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
    if options.server_max_window_bits is not None:
        params.append((_SERVER_MAX_WINDOW_BITS, str(options.server_max_window_bits)))
    # RFC 7692 §7.1.2.2: always tell the server it may cap our window; with a
    # value we also cap it ourselves.
    cmwb = options.client_max_window_bits
    params.append((_CLIENT_MAX_WINDOW_BITS, None if cmwb is None else str(cmwb)))
    return format_extension(EXTENSION_NAME, params)


def accept_offer(
    offers: list[ExtensionOffer], options: DeflateOptions
) -> tuple[str, PerMessageDeflate] | None:
    """Server side: answer the first acceptable permessage-deflate offer.

    ``offers`` are the client's offers in its order of preference; offers for
    other extensions are skipped. An offer with an unknown or repeated
    parameter or an invalid value is declined and the next one tried
    (RFC 7692 §5.1). The server's ``options`` are then applied: its
    ``*_no_context_takeover`` are added, its window caps lower what the client
    asked for, and ``client_max_window_bits`` is answered only when the client
    offered it (RFC 7692 §7.1.2.2).

    Returns the response header value and the server-role engine, or ``None``
    when no offer is acceptable. Never raises for the client's input.
    """
    for name, raw in offers:
        if name != EXTENSION_NAME:
            continue
        try:
            offer = _parse_params(raw, response=False)
        except ValueError:
            continue

        # RFC 7692 §7.1.1: no_context_takeover asked for by the client is
        # granted; either may also be imposed by the server unasked.
        server_nct = offer.server_no_context_takeover or options.server_no_context_takeover
        client_nct = offer.client_no_context_takeover or options.client_no_context_takeover
        # RFC 7692 §7.1.2.1: answer with the client's value or smaller; the
        # server may also limit its own window when the client did not ask.
        server_bits = _cap(offer.server_max_window_bits, options.server_max_window_bits)
        # RFC 7692 §7.1.2.2: only sent back when offered. Echoing the client's
        # own value lets us size our decompressor to it.
        client_bits: int | None = None
        if offer.client_max_window_bits_present:
            client_bits = _cap(offer.client_max_window_bits, options.client_max_window_bits)

        params: list[tuple[str, str | None]] = []
        if server_nct:
            params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
        if client_nct:
            params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
        if server_bits is not None:
            params.append((_SERVER_MAX_WINDOW_BITS, str(server_bits)))
        if client_bits is not None:
            params.append((_CLIENT_MAX_WINDOW_BITS, str(client_bits)))

        engine = PerMessageDeflate(
            is_client=False,
            local_no_context_takeover=server_nct,
            remote_no_context_takeover=client_nct,
            local_max_window_bits=server_bits or 15,
            remote_max_window_bits=client_bits or 15,
            compress_level=options.compress_level,
            memory_level=options.memory_level,
            compress_window_bits=options.compress_window_bits,
            min_size=options.min_size,
        )
        return format_extension(EXTENSION_NAME, params), engine
    return None


def accept_response(params: list[tuple[str, str | None]], options: DeflateOptions) -> PerMessageDeflate:
    """Client side: check the server's answer to our offer; return our engine.

    ``params`` are the parameters of the server's permessage-deflate response
    and ``options`` what :func:`client_offer` offered.

    Raises :class:`~wsskit.exceptions.NegotiationError` when the response has
    an unknown or repeated parameter or an invalid value, drops a
    ``server_no_context_takeover`` or ``server_max_window_bits`` we asked for,
    answers ``server_max_window_bits`` or ``client_max_window_bits`` with a
    value larger than we offered, or sends ``client_max_window_bits`` without
    a value (RFC 7692 §7.1).
    """
    try:
        response = _parse_params(params, response=True)
    except ValueError as exc:
        raise NegotiationError(f"invalid permessage-deflate response: {exc}") from exc

    # RFC 7692 §7.1.1.1: a server accepts server_no_context_takeover by
    # echoing it; it may also add it unasked.
    if options.server_no_context_takeover and not response.server_no_context_takeover:
        raise NegotiationError("server did not accept server_no_context_takeover")

    # RFC 7692 §7.1.2.1: a server accepts server_max_window_bits by answering
    # with the same or a smaller value.
    server_bits = response.server_max_window_bits
    if options.server_max_window_bits is not None:
        if server_bits is None:
            raise NegotiationError("server did not accept server_max_window_bits")
        if server_bits > options.server_max_window_bits:
            raise NegotiationError(
                f"server_max_window_bits={server_bits} exceeds the "
                f"{options.server_max_window_bits} we asked for"
            )

    # RFC 7692 §7.1.2.2: client_offer always offers client_max_window_bits, so
    # the server may answer it; never with more than a value we offered.
    client_bits = response.client_max_window_bits
    if options.client_max_window_bits is not None:
        if client_bits is None:
            client_bits = options.client_max_window_bits
        elif client_bits > options.client_max_window_bits:
            raise NegotiationError(
                f"client_max_window_bits={client_bits} exceeds the "
                f"{options.client_max_window_bits} we offered"
            )

    return PerMessageDeflate(
        is_client=True,
        # RFC 7692 §7.1.1.2: the server may impose client_no_context_takeover;
        # if we offered it we keep our word even when it is not echoed.
        local_no_context_takeover=response.client_no_context_takeover or options.client_no_context_takeover,
        remote_no_context_takeover=response.server_no_context_takeover,
        local_max_window_bits=client_bits or 15,
        remote_max_window_bits=server_bits or 15,
        compress_level=options.compress_level,
        memory_level=options.memory_level,
        compress_window_bits=options.compress_window_bits,
        min_size=options.min_size,
    )
