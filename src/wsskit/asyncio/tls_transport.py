"""TLS driven by wsskit over :class:`ssl.MemoryBIO`, lighter than asyncio's own.

asyncio's TLS layer (``asyncio.sslproto.SSLProtocol``) keeps a 256 KiB read
buffer for each connection for its whole life, so an idle ``wss://``
connection costs about 290 KiB. :class:`TLSProtocol` sits on the plain TCP
transport instead, runs TLS with an :class:`ssl.SSLObject` between two
memory BIOs, and hands the WebSocket protocol a :class:`TLSTransport` that
behaves as asyncio's TLS transport does. It keeps no buffer of its own while
idle: reads decrypt into bytes sized to what arrived, writes are encrypted
at once and handed to the TCP transport (whose write buffer, high and low
water marks and pause/resume signals are the TLS layer's too). OpenSSL's
own record buffers are freed while idle: CPython turns on
``SSL_MODE_RELEASE_BUFFERS`` for every context it creates.

Per message, the open connection takes a short path each way: a TCP read
is decrypted record by record and delivered in one call, a write is
encrypted and handed to TCP in one ``write``, both through the C methods
under :class:`ssl.SSLObject` (see ``_c_level``), with no exception raised
unless a record is still incomplete.

What differs from asyncio, on purpose:

- a failed handshake sends the alert OpenSSL prepared (``handshake
  failure``, ``certificate required``...) before the socket closes, so the
  peer learns why instead of seeing a bare reset;
- a peer's mistakes (a bad ClientHello, no shared cipher, a missing client
  certificate, a handshake timeout) are logged at DEBUG, without traceback.

:func:`tls_server_factory` wraps a protocol factory for
:meth:`asyncio.loop.create_server` (created without ``ssl=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "TLSProtocol",
    "TLSTransport",
    "tls_server_factory",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
]

logger = logging.getLogger("wsskit.tls")

#: asyncio's defaults for ``ssl_handshake_timeout`` and ``ssl_shutdown_timeout``.
DEFAULT_HANDSHAKE_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

# RFC 8446 §5.1: a record carries at most 2**14 bytes of plaintext, and
# SSL_read returns one record's worth at most: reads never need more.
_MAX_RECORD = 2**14
# writelines() joins pieces smaller than this into one record; larger ones
# are encrypted from where they are, without a copy.
_COALESCE = 2**14
# A large write is encrypted and handed to TCP in slices of this size, so the
# ciphertext held at once stays bounded.
_WRITE_SLICE = 2**18

_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)

# States of a TLSProtocol.
_HANDSHAKE = 0  # TCP is up; TLS handshake in progress
_OPEN = 1  # handshake done; application data flows
_SHUTDOWN = 2  # close_notify sent (or received); waiting for the peer or TCP to end
_CLOSED = 3  # TCP transport closed or closing


class TLSTransport(asyncio.Transport):
    """The transport the application protocol sees: plaintext in and out.

    Answers as asyncio's TLS transport does; ``can_write_eof()`` is False
    (TLS has no half-close) and :meth:`write_eof` raises
    :class:`NotImplementedError`.
    """

    __slots__ = ("_tls",)

    def __init__(self, tls: TLSProtocol) -> None:
        # asyncio.BaseTransport.__init__ would give every transport an
        # ``_extra`` dict; extra info is computed on demand instead.
        self._tls = tls

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``ssl_object``, ``peercert``, ``cipher``, ``compression``,
        ``sslcontext``; others (``peername``, ``sockname``, ``socket``) come
        from the TCP transport."""
        return self._tls._extra_info(name, default)

    def is_closing(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the connection ended."""
        return self._tls._closing

    def close(self) -> None:
        """Send close_notify, then close the TCP connection.

        The peer's close_notify (or its end of TCP) is awaited at most the
        shutdown timeout; then the connection is aborted. ``connection_lost``
        follows on the protocol; nothing more is delivered to it.
        """
        self._tls._close()

    def abort(self) -> None:
        """Close the TCP connection at once, discarding what is unsent."""
        self._tls._abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and hand it to the TCP transport."""
        tls = self._tls
        kind = type(data)
        # The hot path (one WebSocket frame, the connection open): encrypt
        # and hand over in place, without the general loop of _write().
        if (
            (kind is bytes or kind is bytearray)
            and tls._state == _OPEN
            and not tls._closing
            and 0 < len(data) <= _WRITE_SLICE
        ):
            try:
                tls._sslc.write(data)  # OpenSSL cuts it into records of 16 KiB at most
            except ssl.SSLError as exc:
                tls._fatal(exc)
                return
            tcp = tls._tcp
            if tcp is not None and not tcp.is_closing():
                tcp.write(tls._outgoing.read())  # type: ignore[union-attr]  # open: the BIOs exist
            return
        tls._write((data,))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Encrypt the pieces, small ones joined into few TLS records."""
        self._tls._write(list_of_data)

    def write_eof(self) -> None:
        """Not possible over TLS: raises :class:`NotImplementedError`."""
        raise NotImplementedError("TLS transports cannot write EOF; close() them")

    def can_write_eof(self) -> bool:
        """False: TLS has no half-close."""
        return False

    def get_write_buffer_size(self) -> int:
        """Bytes (ciphertext) waiting in the TCP transport's buffer."""
        tcp = self._tls._tcp
        return 0 if tcp is None else tcp.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The TCP transport's (low, high) water marks."""
        tcp = self._tls._tcp
        return (0, 0) if tcp is None else tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the TCP transport's water marks: they govern pause/resume_writing."""
        tcp = self._tls._tcp
        if tcp is not None:
            tcp.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        """Stop delivering data to the protocol (and reading from TCP)."""
        self._tls._pause_reading()

    def resume_reading(self) -> None:
        """Resume delivering data, starting with what arrived meanwhile."""
        self._tls._resume_reading()

    def is_reading(self) -> bool:
        """True while data is delivered to the protocol."""
        tls = self._tls
        return not tls._paused and not tls._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver to ``protocol`` from now on."""
        self._tls._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The application protocol."""
        return self._tls._app


class TLSProtocol(asyncio.Protocol):
    """TLS over a plain TCP transport, for one application protocol.

    ``app`` gets ``connection_made`` with a :class:`TLSTransport` once the
    handshake is done, never before; if the handshake fails or times out
    it gets nothing at all (as with asyncio's TLS). ``handshake_timeout``
    bounds the handshake from the TCP connection; ``shutdown_timeout``
    bounds the wait for the peer's close_notify after :meth:`TLSTransport.close`.
    """

    __slots__ = (
        "_app",
        "_app_told",
        "_closing",
        "_context",
        "_eof",
        "_handshake_timeout",
        "_incoming",
        "_loop",
        "_outgoing",
        "_paused",
        "_read_scheduled",
        "_server_hostname",
        "_server_side",
        "_shutdown_timeout",
        "_ssl",
        "_sslc",
        "_state",
        "_tcp",
        "_timer",
        "_transport",
        "_writing_paused",
    )

    def __init__(
        self,
        app: asyncio.Protocol,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._app = app
        self._context = context
        self._server_side = server_side
        self._server_hostname = server_hostname
        self._handshake_timeout = handshake_timeout
        self._shutdown_timeout = shutdown_timeout
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._tcp: asyncio.Transport | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._ssl: ssl.SSLObject | None = None
        # What reads and writes application data: the C object under the
        # SSLObject (see _c_level) or the SSLObject itself.
        self._sslc: Any = None
        self._transport: TLSTransport | None = None
        self._state = _HANDSHAKE
        # The application asked to close (or the connection ended): it gets no more data.
        self._closing = False
        self._paused = False
        self._eof = False  # TCP EOF or close_notify from the peer
        self._app_told = False  # connection_made was called on the application
        self._writing_paused = False  # the TCP transport is over its high-water mark
        self._timer: asyncio.TimerHandle | None = None
        self._read_scheduled = False

    # -- the TCP side: asyncio.Protocol ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """TCP is up: start the TLS handshake (the context is read now, so a
        certificate reloaded in place applies to every later connection)."""
        self._tcp = transport  # type: ignore[assignment]
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        try:
            self._ssl = self._context.wrap_bio(
                self._incoming,
                self._outgoing,
                server_side=self._server_side,
                server_hostname=self._server_hostname,
            )
        except Exception:
            logger.exception("cannot start TLS on a new connection")
            self._state = _CLOSED
            transport.abort()  # type: ignore[attr-defined]
            return
        self._sslc = _c_level(self._ssl)
        if self._handshake_timeout is not None:
            self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        """Ciphertext from TCP: feed it to OpenSSL and act on what it yields.

        Open and reading (the hot path), everything that can be decrypted
        is, and handed to the application in one ``data_received`` call.
        """
        if self._state != _OPEN or self._paused:
            self._data_received_otherwise(data)
            return
        # Open: the BIOs exist (connection_lost ends _OPEN before dropping them).
        incoming: ssl.MemoryBIO = self._incoming  # type: ignore[assignment]
        if data:
            incoming.write(data)
        sslc = self._sslc
        read = sslc.read
        first: bytes | None = None
        more: list[bytes] | None = None
        peer_closed = False
        # Each read asks for what the BIO holds, capped at a record's
        # plaintext. A record's plaintext is shorter than its ciphertext, so
        # a read of a whole record comes back short of what it asked: then
        # nothing is left decrypted inside OpenSSL and pending() need not be
        # asked. Only a read that came back full (the cap, or the tail of a
        # record split across TCP reads) may leave plaintext there. A partial
        # record ends the loop with SSLWantReadError, once per call at most.
        size = incoming.pending or sslc.pending()
        try:
            while size:
                asked = size if size < _MAX_RECORD else _MAX_RECORD
                chunk = read(asked)
                if not chunk:
                    peer_closed = True  # close_notify
                    break
                if first is None:
                    first = chunk
                elif more is None:
                    more = [first, chunk]
                else:
                    more.append(chunk)
                size = incoming.pending
                if not size and len(chunk) == asked:
                    size = sslc.pending()
        except _WANT:
            pass  # a partial record, or a post-handshake message (a TLS 1.3 ticket)
        except ssl.SSLZeroReturnError:
            peer_closed = True  # close_notify (how OpenSSL reports it after ours)
        except ssl.SSLError as exc:
            self._flush()
            self._fatal(exc)
            return
        # Key updates and the like may have something to answer.
        outgoing = self._outgoing
        if outgoing is not None and outgoing.pending:
            self._flush()
        if first is not None:
            self._app.data_received(first if more is None else b"".join(more))
        if peer_closed and self._state == _OPEN:
            self._peer_closed()

    def _data_received_otherwise(self, data: bytes) -> None:
        # Ciphertext during the handshake, the shutdown, or while paused.
        incoming = self._incoming
        if incoming is None or self._state == _CLOSED:
            return
        incoming.write(data)
        state = self._state
        if state == _HANDSHAKE:
            self._do_handshake()
        elif state == _SHUTDOWN:
            self._do_shutdown()
        # else: open but paused; resume_reading() decrypts what waits in the BIO.

    def eof_received(self) -> bool:
        """TCP EOF from the peer. A ragged EOF (no close_notify) is taken
        as the end of the stream, as asyncio does; during the handshake it
        ends the connection."""
        self._eof = True
        state = self._state
        if state == _HANDSHAKE:
            self._fail_handshake(ConnectionResetError("connection closed during the TLS handshake"))
        elif state == _OPEN:
            if not self._paused:
                self._do_read()
                if self._state == _OPEN:
                    self._peer_closed()
            # else: resume_reading() delivers what is left, then the EOF.
        elif state == _SHUTDOWN:
            self._finish()
        return True  # closing is ours to do, once close_notify went out

    def connection_lost(self, exc: Exception | None) -> None:
        """TCP is closed: tell the application (if it was told of the connection)."""
        self._state = _CLOSED
        self._closing = True
        self._cancel_timer()
        self._tcp = None
        if self._app_told:
            self._app_told = False
            self._app.connection_lost(exc)
        # The BIOs go now; the SSLObject stays for ssl_object and peercert,
        # which the application may still ask for after the end.
        self._incoming = self._outgoing = None

    def pause_writing(self) -> None:
        """The TCP write buffer is over its high-water mark: so is ours."""
        self._writing_paused = True
        if self._app_told:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        """The TCP write buffer drained below its low-water mark."""
        self._writing_paused = False
        if self._app_told:
            self._app.resume_writing()

    # -- handshake ------------------------------------------------------------------

    def _do_handshake(self) -> None:
        sslobj = self._ssl
        assert sslobj is not None
        try:
            sslobj.do_handshake()
        except _WANT:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._fail_handshake(exc)
            return
        except Exception as exc:  # a certificate check callback, say
            self._fail_handshake(exc)
            return
        self._cancel_timer()
        self._state = _OPEN
        # TLS 1.3 servers send their session tickets right after the handshake.
        self._flush()
        self._transport = TLSTransport(self)
        self._app_told = True
        self._app.connection_made(self._transport)
        if self._writing_paused and self._app_told:
            self._app.pause_writing()
        # Application data may have come in the same TCP read as the client's Finished.
        if self._state == _OPEN and not self._paused:
            self._do_read()
            if self._eof and self._state == _OPEN:
                self._peer_closed()

    def _fail_handshake(self, exc: BaseException) -> None:
        # Send the alert OpenSSL prepared (asyncio drops it), then close. A
        # peer's mistake, not ours: DEBUG, no traceback.
        self._cancel_timer()
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._closing = True
        logger.debug("%s: TLS handshake failed: %s", _peer(self._tcp), exc)
        self._flush()
        tcp = self._tcp
        if tcp is not None:
            tcp.close()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state != _HANDSHAKE:
            return
        logger.debug("%s: TLS handshake timed out after %s s", _peer(self._tcp), self._handshake_timeout)
        self._state = _CLOSED
        self._closing = True
        tcp = self._tcp
        if tcp is not None:
            tcp.abort()

    # -- reading --------------------------------------------------------------------

    def _do_read(self) -> None:
        # Decrypt what waits in the BIO and deliver it: only while open and
        # not paused (every caller checks), where data_received does just that.
        self.data_received(b"")

    def _peer_closed(self) -> None:
        # close_notify or TCP EOF from the peer: the application's
        # eof_received, then our close_notify and the end of TCP.
        self._eof = True
        if self._app_told and not self._closing:
            try:
                keep_open = self._app.eof_received()
            except Exception as exc:
                self._fatal(exc)
                return
            if keep_open:
                logger.warning("returning true from eof_received() has no effect over TLS")
        self._closing = True
        self._start_shutdown()

    def _pause_reading(self) -> None:
        if self._paused or self._state == _CLOSED:
            return
        self._paused = True
        tcp = self._tcp
        if tcp is not None and tcp.is_reading():
            tcp.pause_reading()

    def _resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        tcp = self._tcp
        if tcp is not None and self._state != _CLOSED and not tcp.is_reading() and not self._eof:
            tcp.resume_reading()
        # Ciphertext that came before the pause is still in the BIO.
        if not self._read_scheduled:
            self._read_scheduled = True
            self._loop.call_soon(self._read_after_resume)

    def _read_after_resume(self) -> None:
        self._read_scheduled = False
        if self._state != _OPEN or self._paused:
            return
        self._do_read()
        if self._eof and self._state == _OPEN and not self._paused:
            self._peer_closed()

    # -- writing --------------------------------------------------------------------

    def _write(self, pieces: Iterable[bytes | bytearray | memoryview]) -> None:
        # Encrypt at once: the TCP transport's buffer is the only one.
        if self._state != _OPEN or self._closing:
            return  # as asyncio: writes after close() are dropped
        sslobj = self._sslc
        small: list[bytes | bytearray | memoryview] = []
        small_size = 0
        try:
            for piece in pieces:
                size = len(piece) if type(piece) is not memoryview else piece.nbytes
                if size == 0:
                    continue
                if size < _COALESCE:
                    if small_size + size > _COALESCE:
                        sslobj.write(small[0] if len(small) == 1 else b"".join(small))
                        small = []
                        small_size = 0
                    small.append(piece)
                    small_size += size
                    continue
                if small:
                    sslobj.write(small[0] if len(small) == 1 else b"".join(small))
                    small = []
                    small_size = 0
                self._write_large(sslobj, piece, size)
            if small:
                sslobj.write(small[0] if len(small) == 1 else b"".join(small))
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush()

    def _write_large(self, sslobj: Any, piece: bytes | bytearray | memoryview, size: int) -> None:
        # Encrypt straight from the caller's buffer, handing TCP a slice's
        # ciphertext at a time so no second copy of the whole payload builds up.
        if size <= _WRITE_SLICE:
            sslobj.write(piece)
            return
        view = memoryview(piece).cast("B")
        for start in range(0, size, _WRITE_SLICE):
            sslobj.write(view[start : start + _WRITE_SLICE])
            self._flush()

    def _flush(self) -> None:
        # Hand what OpenSSL wrote to the TCP transport.
        outgoing = self._outgoing
        tcp = self._tcp
        if outgoing is not None and outgoing.pending and tcp is not None and not tcp.is_closing():
            tcp.write(outgoing.read())

    # -- closing --------------------------------------------------------------------

    def _close(self) -> None:
        if self._closing and self._state != _OPEN:
            return
        self._closing = True
        if self._state == _HANDSHAKE:
            self._abort()
        elif self._state == _OPEN:
            self._start_shutdown()

    def _start_shutdown(self) -> None:
        # Send close_notify; wait (bounded) for the peer's, then close TCP.
        if self._state != _OPEN:
            return
        self._state = _SHUTDOWN
        if self._shutdown_timeout is not None:
            self._cancel_timer()
            self._timer = self._loop.call_later(self._shutdown_timeout, self._shutdown_timed_out)
        self._do_shutdown()

    def _do_shutdown(self) -> None:
        sslobj = self._ssl
        assert sslobj is not None
        if self._eof:
            # The peer is gone or said close_notify: ours (if it can still
            # go) and done.
            with contextlib.suppress(ssl.SSLError, OSError):
                sslobj.unwrap()
            self._flush()
            self._finish()
            return
        try:
            sslobj.unwrap()
        except _WANT:
            self._flush()  # close_notify sent; the peer's has not come yet
            return
        except ssl.SSLError as exc:
            # A record after our close_notify that is not the peer's: the
            # stream is over either way.
            logger.debug("%s: TLS shutdown: %s", _peer(self._tcp), exc)
            self._flush()
            self._finish()
            return
        self._flush()
        self._finish()

    def _finish(self) -> None:
        # Both close_notify exchanged (or the peer left): close TCP, which
        # flushes its buffer first, then calls connection_lost.
        self._cancel_timer()
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        tcp = self._tcp
        if tcp is not None:
            tcp.close()

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        if self._state == _SHUTDOWN:
            logger.debug(
                "%s: no close_notify from the peer in %s s; aborting",
                _peer(self._tcp),
                self._shutdown_timeout,
            )
            self._abort()

    def _abort(self) -> None:
        self._closing = True
        self._cancel_timer()
        self._state = _CLOSED
        tcp = self._tcp
        if tcp is not None:
            tcp.abort()

    def _fatal(self, exc: BaseException) -> None:
        # A corrupt record, a forbidden renegotiation...: the peer's doing.
        logger.debug("%s: TLS error: %s", _peer(self._tcp), exc)
        self._abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- extra info -----------------------------------------------------------------

    def _extra_info(self, name: str, default: Any) -> Any:
        sslobj = self._ssl
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return self._context
        if sslobj is not None and self._state != _HANDSHAKE:
            if name == "peercert":
                return sslobj.getpeercert()
            if name == "cipher":
                return sslobj.cipher()
            if name == "compression":
                return sslobj.compression()
        elif name in ("peercert", "cipher", "compression"):
            return default
        tcp = self._tcp
        return default if tcp is None else tcp.get_extra_info(name, default)


def tls_server_factory(
    protocol_factory: Callable[[], asyncio.Protocol],
    context: ssl.SSLContext,
    *,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Callable[[], TLSProtocol]:
    """A factory for :meth:`asyncio.loop.create_server` (without ``ssl=``)
    that runs TLS with ``context`` under each protocol ``protocol_factory`` makes.

    The application protocol is made when TCP is accepted (so its clock
    starts there) and connected once the handshake is done. Raises
    :class:`ValueError` for a context that is not a server one.
    """
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, not {type(context).__name__}")
    if context.protocol is ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError("ssl must be a server context (ssl.PROTOCOL_TLS_SERVER)")

    def factory() -> TLSProtocol:
        return TLSProtocol(
            protocol_factory(),
            context,
            server_side=True,
            handshake_timeout=handshake_timeout,
            shutdown_timeout=shutdown_timeout,
        )

    return factory


def _c_level(sslobj: ssl.SSLObject) -> Any:
    # ssl.SSLObject's read(), write() and pending() are Python methods that
    # call the same methods of the C object it wraps (``_sslobj``, there
    # since Python 3.5): calling that one directly saves a Python frame per
    # call on the hot path, same arguments, results and exceptions. Should a
    # later Python drop the attribute, the SSLObject itself does the same.
    inner = getattr(sslobj, "_sslobj", None)
    names = ("read", "write", "pending")
    if inner is not None and all(callable(getattr(inner, name, None)) for name in names):
        return inner
    return sslobj


def _peer(tcp: asyncio.BaseTransport | None) -> str:
    # For log lines: "host:port" of the peer, if known.
    if tcp is None:
        return "?"
    address = tcp.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
