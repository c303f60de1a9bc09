"""The WebSocket opening handshake (RFC 6455 §4) for both roles, without I/O.

:class:`ServerHandshake` reads an upgrade request and writes the 101 answer
(or a refusal); :class:`ClientHandshake` writes the request and checks the
answer. Both take bytes with ``receive_data`` and keep whatever follows the
handshake in ``leftover``: the first frames, to be handed to the frame parser.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from ..exceptions import HandshakeError, InvalidHandshake, LocalProtocolError, NegotiationError
from .deflate import DeflateOptions, PerMessageDeflate, accept_offer, accept_response, client_offer
from .events import Accept, Reject, Request
from .headers import Headers, HeadersLike, format_extension, is_token, parse_extensions, parse_list
from .http import (
    HeadScanner,
    RequestHead,
    ResponseHead,
    build_request,
    build_response,
    parse_request_head,
    parse_response_head,
)
from .limits import Limits

__all__ = ["GUID", "accept_key", "make_key", "error_reject", "ServerHandshake", "ClientHandshake"]

# RFC 6455 §1.3: the GUID appended to the client's key to derive the accept value.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_DEFLATE = "permessage-deflate"

# Fields the handshake itself writes; a caller's extra headers may not repeat them.
_HANDSHAKE_FIELDS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
_CLIENT_FIELDS = _HANDSHAKE_FIELDS | {"host"}


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``.

    RFC 6455 §4.2.2: base64 of the SHA-1 of the key followed by :data:`GUID`.
    Raises :class:`UnicodeEncodeError` if ``key`` is not ASCII.
    """
    # SHA-1 here is a fixed protocol transform, not a security measure.
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def make_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: 16 random bytes in base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _is_valid_key(key: str) -> bool:
    # RFC 6455 §4.1: the key is the base64 encoding of exactly 16 bytes.
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are both ValueErrors
        return False
    return len(raw) == 16


def _comma_items(values: list[str]) -> list[str]:
    """Split comma-separated values into stripped, lower-cased, non-empty items."""
    items = (item.strip(" \t").lower() for value in values for item in value.split(","))
    return [item for item in items if item]


def _has_upgrade_option(headers: Headers) -> bool:
    """Tell whether ``Connection`` lists the ``upgrade`` option; raise on a malformed list."""
    try:
        options = parse_list(headers.get_all("Connection"))
    except ValueError:
        raise InvalidHandshake("invalid Connection header", 400) from None
    return any(option.lower() == "upgrade" for option in options)


class ServerHandshake:
    """The server's side of the opening handshake.

    Feed the client's bytes to :meth:`receive_data`, call :meth:`next_request`
    until it returns the :class:`Request`, then answer with :meth:`accept`
    (a valid upgrade only) or :meth:`reject`; when :meth:`next_request`
    raised, or to refuse an invalid upgrade with the status its ``error``
    carries, send :meth:`error_response`.
    ``compression`` enables permessage-deflate (RFC 7692) when the client offers it.
    """

    __slots__ = (
        "_answered",
        "_buffer",
        "_compression",
        "_consumed",
        "_error",
        "_head",
        "_head_end",
        "_limits",
        "_request",
        "_scanner",
    )

    def __init__(self, *, limits: Limits, compression: DeflateOptions | None = None) -> None:
        self._limits = limits
        self._compression = compression
        self._buffer = bytearray()
        self._scanner = HeadScanner(limits, request=True)
        self._head: RequestHead | None = None
        self._head_end = 0
        self._consumed: int | None = None
        self._request: Request | None = None
        self._error: InvalidHandshake | None = None
        self._answered = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the client."""
        self._buffer += data

    def next_request(self, *, strict: bool = False) -> Request | None:
        """Return the :class:`Request` once its head is complete and well-formed.

        Returns None while the head is incomplete (or the body of a plain
        ``POST``, which is read in full into ``Request.body``), and the same
        Request on later calls. Raises :class:`InvalidHandshake` whose ``status`` is the
        answer to give (see :meth:`error_response`) when the HTTP head is
        malformed or too large, or its body not allowed: 400, 411, 413, 414,
        431 or 505, see :func:`~wsskit.protocol.http.parse_request_head`. A raised error is
        raised again on later calls.

        A well-formed request that is not a valid WebSocket upgrade is
        returned with ``error`` set to an :class:`InvalidHandshake`, so that a
        server may still answer it as plain HTTP (a page, a health check); with
        ``strict`` that error is raised instead. Its status is:

        - 405: the method is not GET (answer with ``Allow: GET``);
        - 426: ``Upgrade`` lacks ``websocket`` or ``Connection`` lacks
          ``upgrade`` (a plain HTTP request), or ``Sec-WebSocket-Version`` is
          not 13;
        - 400: the target is not a path, ``Connection`` is not a list of
          tokens, ``Sec-WebSocket-Key`` is not one base64 encoding of 16
          bytes, or ``Sec-WebSocket-Protocol`` or ``Sec-WebSocket-Extensions``
          is malformed.
        """
        if self._error is not None:
            raise self._error
        if self._request is None:
            if self._head is None:
                try:
                    parsed = parse_request_head(self._buffer, self._limits, scanner=self._scanner)
                except InvalidHandshake as exc:
                    self._error = exc
                    raise
                if parsed is None:
                    return None
                self._head, self._head_end = parsed
            # The body of a plain POST (bounded by limits.max_request_body,
            # which the head parser enforced) is read in full first.
            end = self._head_end + self._head.content_length
            if len(self._buffer) < end:
                return None
            body = bytes(self._buffer[self._head_end : end])
            self._consumed = end
            self._request = _upgrade_request(self._head, body)
        if self._request.error is not None and strict:
            raise self._request.error
        return self._request

    @property
    def leftover(self) -> bytes:
        """The bytes received after the request (head and body; empty until it is complete).

        The server never reads them as another request: the connection is
        upgraded, or closed after its one answer.
        """
        if self._consumed is None:
            return b""
        return bytes(self._buffer[self._consumed :])

    def accept(
        self, request: Request, accept: Accept, *, subprotocols_allowed: bool = True
    ) -> tuple[bytes, Accept, PerMessageDeflate | None]:
        """Build the 101 response accepting ``request``.

        ``accept.subprotocol`` must be one the client offered; ``accept.headers``
        are added after the handshake's own fields. When compression options
        were given and the client offered permessage-deflate, the offers go to
        :func:`~wsskit.protocol.deflate.accept_offer`, which may decline them.

        Returns the response bytes, the :class:`Accept` as sent (its headers
        are the whole response's, its extensions the negotiated
        ``Sec-WebSocket-Extensions`` values) and the deflate engine or None.

        Raises :class:`LocalProtocolError` when the handshake was already
        answered, ``request`` is not a valid upgrade, the subprotocol was not
        offered (or ``subprotocols_allowed`` is False and one was chosen), or
        ``accept.headers`` hold a field the handshake writes itself
        (``Upgrade``, ``Connection``, ``Sec-WebSocket-*``) or one that cannot be
        sent. A deflate offer the server cannot take is declined, never an error
        (RFC 7692 §5.1).
        """
        if self._answered:
            raise LocalProtocolError("the handshake has already been answered")
        if request.error is not None:
            raise LocalProtocolError("cannot accept a request that is not a valid WebSocket upgrade")
        subprotocol = accept.subprotocol
        if subprotocol is not None:
            if not subprotocols_allowed:
                raise LocalProtocolError("no subprotocol may be chosen for this request")
            # RFC 6455 §4.2.2: the selected subprotocol must be one of the client's.
            if subprotocol not in request.subprotocols:
                raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered by the client")
        for name in accept.headers:
            if name.lower() in _HANDSHAKE_FIELDS:
                raise LocalProtocolError(f"the handshake sets {name} itself")
        keys = request.headers.get_all("Sec-WebSocket-Key")
        if len(keys) != 1 or not _is_valid_key(keys[0]):
            raise LocalProtocolError("the request has no valid Sec-WebSocket-Key")

        # RFC 6455 §4.2.2 item 5: the fields of the server's opening handshake.
        headers = Headers(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(keys[0])),
            ]
        )
        if subprotocol is not None:
            headers.add("Sec-WebSocket-Protocol", subprotocol)
        extensions: tuple[str, ...] = ()
        engine: PerMessageDeflate | None = None
        if self._compression is not None:
            try:
                offered = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
            except ValueError:
                raise LocalProtocolError("the request has a malformed Sec-WebSocket-Extensions") from None
            # RFC 6455 §9.1: extensions we don't know are declined by leaving them out.
            offers = [offer for offer in offered if offer[0] == _DEFLATE]
            negotiated = accept_offer(offers, self._compression) if offers else None
            if negotiated is not None:
                value, engine = negotiated
                headers.add("Sec-WebSocket-Extensions", value)
                extensions = (value,)
        headers.update(accept.headers)
        response = build_response(101, headers)
        self._answered = True
        return response, Accept(subprotocol, headers, extensions), engine

    def reject(self, reject: Reject) -> bytes:
        """Build the HTTP response refusing the request.

        Adds ``Content-Type: text/plain; charset=utf-8`` when there is a body
        and no type, and ``Connection: close`` (replacing any ``Connection``):
        the connection ends after a refusal.

        Raises :class:`LocalProtocolError` when the handshake was already
        answered, the status is not 200-599, or the response cannot be built
        (see :func:`~wsskit.protocol.http.build_response`).
        """
        if self._answered:
            raise LocalProtocolError("the handshake has already been answered")
        if not 200 <= reject.status <= 599:
            raise LocalProtocolError(f"a refusal needs a final status, not {reject.status!r}")
        headers = Headers(reject.headers)
        if reject.body and "Content-Type" not in headers:
            headers.add("Content-Type", "text/plain; charset=utf-8")
        # The connection ends after a refusal; keep a Connection field that
        # already says so (a 426 also lists Upgrade there).
        connection = headers.get("Connection", "") or ""
        if "close" not in [token.strip().lower() for token in connection.split(",")]:
            headers["Connection"] = "close"
        response = build_response(reject.status, headers, reject.body)
        self._answered = True
        return response

    @staticmethod
    def error_response(error: InvalidHandshake) -> bytes:
        """Build the response to a request that failed with ``error``.

        The bytes of :func:`error_reject`, with ``Connection`` saying the
        connection closes.
        """
        reject = error_reject(error)
        return build_response(reject.status, reject.headers, reject.body)


def error_reject(error: InvalidHandshake) -> Reject:
    """Return the standard refusal of a request that failed with ``error``.

    The status is ``error.status`` (400 if that is not a 4xx or 5xx), the
    body a line of text/plain with the message, and the connection is
    closed. A 405 carries ``Allow: GET`` (RFC 9110 §15.5.6); a 426 carries
    ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.4) and ``Upgrade: websocket``
    (RFC 9110 §15.5.22).
    """
    status = error.status if 400 <= error.status <= 599 else 400
    headers = Headers()
    connection = "close"
    if status == 405:
        headers.add("Allow", "GET")
    elif status == 426:
        headers.add("Upgrade", "websocket")
        headers.add("Sec-WebSocket-Version", "13")
        # RFC 9110 §7.8: whoever sends Upgrade lists it in Connection.
        connection = "Upgrade, close"
    headers.add("Connection", connection)
    headers.add("Content-Type", "text/plain; charset=utf-8")
    body = f"Failed to open a WebSocket connection: {error}\n".encode("utf-8", "replace")
    return Reject(status, headers, body)


def _upgrade_request(head: RequestHead, body: bytes = b"") -> Request:
    """Turn a parsed request into a Request, with ``error`` set if not an upgrade."""
    try:
        subprotocols, extensions = _check_upgrade(head)
    except InvalidHandshake as exc:
        return Request(head.target, head.headers, method=head.method, error=exc, body=body)
    return Request(head.target, head.headers, subprotocols, extensions, method=head.method, body=body)


def _check_upgrade(head: RequestHead) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check the request against RFC 6455 §4.2.1; return the offered subprotocols and extensions."""
    headers = head.headers
    # RFC 6455 §4.1: the opening handshake is HTTP/1.1 (an HTTP/1.0 request
    # is read only to answer plain requests, such as health checks).
    if head.version != "HTTP/1.1":
        raise InvalidHandshake(f"a WebSocket upgrade needs HTTP/1.1, not {head.version}", 505)
    # RFC 6455 §4.2.1 item 1: the method of the request MUST be GET.
    if head.method != "GET":
        raise InvalidHandshake(f"method {head.method} not allowed; a WebSocket upgrade uses GET", 405)
    # RFC 6455 §3, §4.1: the target is a resource name (path and query). The
    # absolute-form is for proxies, which do not speak to us directly.
    if not head.target.startswith("/"):
        raise InvalidHandshake("request target is not a path", 400)
    # RFC 6455 §4.2.1 items 3 and 4: Upgrade contains "websocket" and
    # Connection the option "Upgrade", case-insensitively. Without them this is
    # a plain HTTP request (RFC 9110 §7.8 ignores an Upgrade not named in
    # Connection): RFC 9110 §15.5.22 answers that with 426 Upgrade Required.
    if "websocket" not in _comma_items(headers.get_all("Upgrade")):
        raise InvalidHandshake("missing Upgrade: websocket", 426)
    if not _has_upgrade_option(headers):
        raise InvalidHandshake("missing Connection: Upgrade", 426)
    # RFC 6455 §4.2.1 item 6 and §4.4: anything but version 13 gets 426.
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise InvalidHandshake("unsupported or missing Sec-WebSocket-Version; only 13 is supported", 426)
    # RFC 6455 §4.2.1 item 5: one key, the base64 encoding of 16 bytes.
    keys = headers.get_all("Sec-WebSocket-Key")
    if not keys:
        raise InvalidHandshake("missing Sec-WebSocket-Key", 400)
    if len(keys) > 1:
        raise InvalidHandshake("more than one Sec-WebSocket-Key", 400)
    if not _is_valid_key(keys[0]):
        raise InvalidHandshake("Sec-WebSocket-Key is not the base64 encoding of 16 bytes", 400)
    return _offered_subprotocols(headers), _offered_extensions(headers)


def _offered_subprotocols(headers: Headers) -> tuple[str, ...]:
    values = headers.get_all("Sec-WebSocket-Protocol")
    if not values:
        return ()
    try:
        subprotocols = parse_list(values)
    except ValueError:
        raise InvalidHandshake("malformed Sec-WebSocket-Protocol", 400) from None
    # RFC 6455 §4.1 item 10: one or more tokens, all unique.
    if not subprotocols:
        raise InvalidHandshake("empty Sec-WebSocket-Protocol", 400)
    if len(set(subprotocols)) != len(subprotocols):
        raise InvalidHandshake("repeated subprotocol in Sec-WebSocket-Protocol", 400)
    return tuple(subprotocols)


def _offered_extensions(headers: Headers) -> tuple[str, ...]:
    try:
        offers = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
    except ValueError:
        raise InvalidHandshake("malformed Sec-WebSocket-Extensions", 400) from None
    # An extension may be offered several times with different parameters
    # (RFC 7692 §5); the names are listed once, in the order first offered.
    return tuple(dict.fromkeys(name for name, _ in offers))


class ClientHandshake:
    """The client's side of the opening handshake.

    Send :meth:`request_bytes`, feed the server's bytes to
    :meth:`receive_data` (and :meth:`receive_eof` when the connection ends),
    and call :meth:`next_response` until it returns the outcome.

    ``host`` is the ``Host`` value, with the port when it is not the default
    (``"example.com:8443"``, ``"[::1]:9000"``); ``target`` is the path and
    query. ``subprotocols`` are offered in order; ``compression`` offers
    permessage-deflate; ``headers`` are sent after the handshake's own fields
    (the core adds no ``User-Agent`` of its own: that is the I/O layer's choice). ``key`` fixes the
    ``Sec-WebSocket-Key``, for tests; by default it is random.

    Raises :class:`LocalProtocolError` when the request cannot be built: an
    empty host, a target not starting with ``/``, a subprotocol that is not
    a token or is repeated, a key that is not base64 of 16 bytes, an
    ``Origin`` both in ``origin`` and ``headers``, a field the handshake
    writes itself in ``headers`` (``Host``, ``Upgrade``, ``Connection``,
    ``Sec-WebSocket-*``), or a field that cannot be sent (control characters).
    :class:`TypeError` when ``subprotocols`` is a string.
    """

    __slots__ = (
        "_buffer",
        "_compression",
        "_consumed",
        "_end",
        "_eof",
        "_error",
        "_head",
        "_key",
        "_limits",
        "_request",
        "_result",
        "_scanner",
        "_sent",
        "_subprotocols",
    )

    def __init__(
        self,
        host: str,
        target: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        origin: str | None = None,
        compression: DeflateOptions | None = None,
        limits: Limits = Limits(),  # noqa: B008 - Limits is frozen, sharing it is safe
        key: str | None = None,
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not a string")
        if key is None:
            key = make_key()
        elif not _is_valid_key(key):
            raise LocalProtocolError("key is not the base64 encoding of 16 bytes")
        if not host:
            raise LocalProtocolError("empty host")
        if not target.startswith("/"):
            raise LocalProtocolError(f"request target must start with '/': {target!r}")
        for name in subprotocols:
            if not is_token(name):
                raise LocalProtocolError(f"invalid subprotocol name: {name!r}")
        if len(set(subprotocols)) != len(subprotocols):
            raise LocalProtocolError("repeated subprotocol")
        extra = Headers(headers) if headers is not None else Headers()
        for name in extra:
            if name.lower() in _CLIENT_FIELDS:
                raise LocalProtocolError(f"the handshake sets {name} itself")
        if origin is not None and "Origin" in extra:
            raise LocalProtocolError("Origin given both as an argument and in headers")

        # RFC 6455 §4.1: the fields of the client's opening handshake.
        fields = Headers(
            [
                ("Host", host),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        if subprotocols:
            fields.add("Sec-WebSocket-Protocol", ", ".join(subprotocols))
        if compression is not None:
            fields.add("Sec-WebSocket-Extensions", client_offer(compression))
        if origin is not None:
            fields.add("Origin", origin)
        fields.update(extra)

        self._request = build_request("GET", target, fields)
        self._sent = Request(
            target, fields, tuple(subprotocols), (client_offer(compression),) if compression else ()
        )
        self._key = key
        self._subprotocols = tuple(subprotocols)
        self._compression = compression
        self._limits = limits
        self._buffer = bytearray()
        self._scanner = HeadScanner(limits, request=False)
        self._eof = False
        self._head: ResponseHead | None = None
        self._consumed = 0  # the end of the final response's head, once parsed
        self._end: int | None = None  # where the handshake's bytes end, once known
        self._result: tuple[Accept, PerMessageDeflate | None] | Reject | None = None
        self._error: HandshakeError | None = None

    @property
    def request(self) -> Request:
        """The upgrade request this handshake sends, as a :class:`Request`."""
        return self._sent

    @property
    def key(self) -> str:
        """The ``Sec-WebSocket-Key`` sent with the request."""
        return self._key

    def request_bytes(self) -> bytes:
        """Return the whole upgrade request to send."""
        return self._request

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the server."""
        self._buffer += data

    def receive_eof(self) -> None:
        """Record that the server closed the connection."""
        self._eof = True

    @property
    def leftover(self) -> bytes:
        """The bytes received after the response (empty until it is complete)."""
        if self._end is None:
            return b""
        return bytes(self._buffer[self._end :])

    def next_response(self) -> tuple[Accept, PerMessageDeflate | None] | Reject | None:
        """Return the outcome of the handshake, or None while the response is incomplete.

        For a 101 response, checks it as RFC 6455 §4.1 asks and returns an
        :class:`Accept` (the subprotocol chosen, the response's headers, the
        negotiated extensions as header values) with the deflate engine or
        None. Interim 1xx responses are skipped (RFC 9110 §15.2).

        For any other status returns a :class:`Reject` with the body: up to
        ``Content-Length`` bytes, cut at ``limits.max_handshake_body`` (or
        fewer if the connection ended first); without ``Content-Length``
        whatever has arrived with the head, and nothing after a
        ``Transfer-Encoding`` (chunked bodies are not decoded).

        Later calls return the same result. Raises
        :class:`InvalidHandshake` when the response is malformed, the
        connection ended before its head did, or the 101 is invalid (not
        HTTP/1.1, ``Upgrade`` not ``websocket``, ``Connection`` without
        ``upgrade``, a missing or wrong ``Sec-WebSocket-Accept``, a body);
        :class:`NegotiationError` when the server chose a subprotocol or an
        extension that was not offered, or permessage-deflate twice, or
        :func:`~wsskit.protocol.deflate.accept_response` refuses its answer.
        A raised error is raised again on later calls.
        """
        if self._error is not None:
            raise self._error
        if self._result is None:
            try:
                self._result = self._next_response()
            except HandshakeError as exc:
                self._error = exc
                raise
        return self._result

    def _next_response(self) -> tuple[Accept, PerMessageDeflate | None] | Reject | None:
        while self._head is None:
            parsed = parse_response_head(self._buffer, self._limits, scanner=self._scanner)
            if parsed is None:
                if self._eof:
                    raise InvalidHandshake("connection closed during handshake")
                return None
            head, consumed = parsed
            if 100 <= head.status < 200 and head.status != 101:
                # RFC 9110 §15.2: a client must parse and skip interim responses
                # (103 Early Hints, say) that come before the final one.
                del self._buffer[:consumed]
                self._scanner = HeadScanner(self._limits, request=False)
                continue
            self._head = head
            self._consumed = consumed
        if self._head.status == 101:
            return self._check_accept(self._head)
        return self._read_reject(self._head)

    def _read_reject(self, head: ResponseHead) -> Reject | None:
        headers = head.headers
        available = len(self._buffer) - self._consumed
        limit = self._limits.max_handshake_body
        if head.status in (204, 304) or "Transfer-Encoding" in headers:
            size = 0
        elif "Content-Length" in headers:
            size = min(_content_length(headers), limit)
            if available < size and not self._eof:
                return None
        else:
            # Without a length the body runs to the end of the connection;
            # the status is what matters, so answer now with what has come.
            size = min(available, limit)
        body = bytes(self._buffer[self._consumed : self._consumed + size])
        self._end = self._consumed + len(body)
        return Reject(head.status, headers, body)

    def _check_accept(self, head: ResponseHead) -> tuple[Accept, PerMessageDeflate | None]:
        headers = head.headers
        # RFC 6455 §4.1: the client MUST fail the connection when any of these
        # checks fails ("If the status code received from the server is not 101...").
        if head.version != "HTTP/1.1":
            raise InvalidHandshake(f"101 response with {head.version}")
        if _comma_items(headers.get_all("Upgrade")) != ["websocket"]:
            raise InvalidHandshake("101 response without Upgrade: websocket")
        if not _has_upgrade_option(headers):
            raise InvalidHandshake("101 response without Connection: Upgrade")
        accepts = headers.get_all("Sec-WebSocket-Accept")
        if len(accepts) != 1:
            raise InvalidHandshake("101 response without exactly one Sec-WebSocket-Accept")
        if accepts[0] != accept_key(self._key):
            raise InvalidHandshake("Sec-WebSocket-Accept does not match the key sent")
        # RFC 9110 §8.6: a 1xx has no content; bytes after the head are frames.
        lengths = _comma_items(headers.get_all("Content-Length"))
        if "Transfer-Encoding" in headers or any(length != "0" for length in lengths):
            raise InvalidHandshake("101 response with a body")
        subprotocol = self._chosen_subprotocol(headers)
        extensions, engine = self._negotiated_extensions(headers)
        self._end = self._consumed
        return Accept(subprotocol, headers, extensions), engine

    def _chosen_subprotocol(self, headers: Headers) -> str | None:
        values = headers.get_all("Sec-WebSocket-Protocol")
        if not values:
            return None
        try:
            chosen = parse_list(values)
        except ValueError:
            raise InvalidHandshake("malformed Sec-WebSocket-Protocol in the response") from None
        # RFC 6455 §4.1 item 6 of the response checks: one of the offered values, or none.
        if len(chosen) != 1:
            raise NegotiationError("the server must choose exactly one subprotocol")
        if chosen[0] not in self._subprotocols:
            raise NegotiationError(f"the server chose subprotocol {chosen[0]!r}, which was not offered")
        return chosen[0]

    def _negotiated_extensions(self, headers: Headers) -> tuple[tuple[str, ...], PerMessageDeflate | None]:
        try:
            answered = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except ValueError:
            raise InvalidHandshake("malformed Sec-WebSocket-Extensions in the response") from None
        engine: PerMessageDeflate | None = None
        extensions: list[str] = []
        for name, params in answered:
            # RFC 6455 §4.1 item 5 of the response checks: only extensions offered.
            if name != _DEFLATE or self._compression is None:
                raise NegotiationError(f"the server accepted extension {name!r}, which was not offered")
            if engine is not None:
                raise NegotiationError("the server accepted permessage-deflate twice")
            engine = accept_response(params, self._compression)
            extensions.append(format_extension(name, params))
        return tuple(extensions), engine


def _content_length(headers: Headers) -> int:
    """Return the Content-Length of a response; raise InvalidHandshake when malformed."""
    items = {item.strip(" \t") for value in headers.get_all("Content-Length") for item in value.split(",")}
    # RFC 9112 §6.3 item 5: repeated values are fine if they agree.
    if len(items) != 1:
        raise InvalidHandshake("conflicting Content-Length values")
    (item,) = items
    if not (item.isascii() and item.isdigit()):
        raise InvalidHandshake("invalid Content-Length")
    # Bodies are cut far below this; a long digit string must not reach int().
    return int(item) if len(item) <= 18 else 10**18
