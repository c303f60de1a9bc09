"""Incremental parsing and building of HTTP/1.1 message heads (RFC 9112).

The WebSocket opening handshake (RFC 6455 §4) is one HTTP/1.1 request and one
response; this module reads and writes their heads, and tells how long the small
body of a plain ``POST`` is (no chunked bodies, no keep-alive, no pipelining).

The parser is strict, and says so with :class:`~wsskit.exceptions.InvalidHandshake`
whose ``status`` is the HTTP status a server answers with:

- Lines end with CRLF. A bare LF is refused (400): RFC 9112 §2.2 allows a
  recipient to accept one, but agreeing byte for byte with the proxies in front
  of us is worth more than leniency (request smuggling lives in such gaps).
  An empty line before the start line is refused too (400); it only ever
  appears between pipelined requests, which an upgrade never follows.
- Request line: ``method SP request-target SP HTTP-version`` with single
  spaces (400 otherwise). The method is a token; the target is printable
  ASCII. ``HTTP/1.1`` and ``HTTP/1.0`` are read (plain requests such as a
  load balancer's ``OPTIONS / HTTP/1.0`` health check are HTTP/1.0; an upgrade
  needs HTTP/1.1, which :mod:`wsskit.protocol.handshake` checks with 505). Any
  other well-formed version gets 505, and that includes the ``PRI * HTTP/2.0``
  preface of HTTP/2: HTTP/2 is not spoken here. A version that is not
  ``HTTP/<digit>.<digit>`` gets 400.
- Header lines: the name is a token followed directly by ``:`` (whitespace
  before the colon: 400, RFC 9112 §5.1; a line starting with whitespace, the
  obsolete line folding: 400, RFC 9112 §5.2). Values may hold visible ASCII,
  space, HTAB and obs-text (bytes 0x80-0xFF, decoded as ISO-8859-1 as RFC 9110
  §5.5 suggests); any other control character, CR and NUL included, gets 400.
  The request line and header names must be ASCII.
- Limits (:class:`~wsskit.protocol.limits.Limits`) are checked as bytes
  arrive, before the blank line ending the head: a start line longer than
  ``max_request_line`` gets 414, a header line longer than ``max_header_line``,
  more than ``max_headers`` fields or a head over ``max_head_size`` gets 431.
- An HTTP/1.1 request must carry exactly one valid ``Host`` (400, RFC 9112
  §3.2); an HTTP/1.0 one may have none, and at most one valid one.
- Bodies (a body is where request smuggling hides): any ``Transfer-Encoding``
  gets 400 (chunked bodies are not read). Only a plain ``POST`` (one without
  an ``Upgrade`` field) may have a body, announced by exactly one
  ``Content-Length`` field holding one decimal number (a list, even of equal
  values, gets 400) of at most ``max_request_body`` bytes (413 beyond, raised
  as soon as the head is parsed, before any of the body is read). A plain
  ``POST`` without ``Content-Length`` gets 411. Any other request with a
  ``Content-Length`` other than 0 gets 400: an upgrade request has no body,
  and its bytes would otherwise be read as frames. The head parser only
  reports the length (:attr:`RequestHead.content_length`); reading the body
  is the caller's (:class:`~wsskit.protocol.handshake.ServerHandshake`).

Parsing a growing buffer again from its start on every call would make a
peer that sends one byte at a time cost quadratic time; a :class:`HeadScanner`
passed on each call remembers how far the buffer has been checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from ..exceptions import InvalidHandshake, LocalProtocolError
from .headers import Headers
from .limits import Limits

__all__ = [
    "RequestHead",
    "ResponseHead",
    "HeadScanner",
    "parse_request_head",
    "parse_response_head",
    "build_request",
    "build_response",
]


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The request line and header fields of an HTTP/1.1 (or 1.0) request.

    ``content_length`` is the length of the body that follows the head (0
    for every request but a plain ``POST``).
    """

    method: str
    target: str
    version: str
    headers: Headers
    content_length: int = 0


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The status line and header fields of an HTTP/1.1 response."""

    version: str
    status: int
    reason: str
    headers: Headers


_CR = 0x0D
_LF = 0x0A

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 §3.2: origin-form and friends are printable ASCII without spaces.
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")
_TARGET_STR_RE = re.compile(r"[\x21-\x7e]+")
# RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT (case-sensitive).
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
# RFC 9110 §5.5: field values (and RFC 9112 §4 reason phrases) are HTAB, SP,
# VCHAR and obs-text. No nested quantifier, so matching stays linear.
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_FIELD_VALUE_STR_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [ ":" port ], the host being an
# IP literal in brackets or a reg-name (which also covers IPv4 addresses).
_HOST_RE = re.compile(r"(?:\[[0-9A-Za-z:.%\-_~]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
_DIGITS_RE = re.compile(r"[0-9]+")


class HeadScanner:
    """Find where an HTTP head ends in a growing buffer, enforcing the line limits.

    Keep one scanner per head and pass it to :func:`parse_request_head` or
    :func:`parse_response_head` on every call over the same buffer, which may
    only grow at its end meanwhile: the scanner remembers which lines it has
    already checked, so every byte is looked at once however the data is split.
    """

    __slots__ = (
        "_end",
        "_head_limit",
        "_head_status",
        "_line_limit",
        "_lines",
        "_max_fields",
        "_pos",
        "_start_limit",
        "_start_status",
    )

    def __init__(self, limits: Limits, *, request: bool = True) -> None:
        self._start_limit = limits.max_request_line
        # RFC 9112 §3: 414 for a request line too long; a response has no status to answer.
        self._start_status = 414 if request else 400
        self._line_limit = limits.max_header_line
        self._max_fields = limits.max_headers
        self._head_limit = limits.max_head_size
        self._head_status = 431 if request else 400
        self._pos = 0  # where the line not yet complete starts
        self._lines = 0  # complete lines so far, the start line included
        self._end: int | None = None

    def scan(self, buf: bytes | bytearray) -> int | None:
        """Return the length of the head (blank line included), or None if incomplete.

        Raises :class:`InvalidHandshake` with status 414 or 431 as soon as a
        line or the number of fields exceeds its limit, and 400 for a bare LF
        or an empty line where the start line belongs.
        """
        if self._end is not None:
            return self._end
        pos = self._pos
        while True:
            nl = buf.find(b"\n", pos)
            if nl == -1:
                self._pos = pos
                self._check_partial(buf, pos)
                # Room must be left for the CRLF that ends the head.
                if len(buf) + (1 if buf[-1:] == b"\r" else 2) > self._head_limit:
                    raise InvalidHandshake("header section too large", self._head_status)
                return None
            if nl + 1 > self._head_limit:
                raise InvalidHandshake("header section too large", self._head_status)
            if nl == pos or buf[nl - 1] != _CR:
                raise InvalidHandshake("line ends with a bare LF instead of CRLF", 400)
            length = nl - 1 - pos
            self._check_length(length)
            if length == 0:
                if self._lines == 0:
                    raise InvalidHandshake("empty line where the start line belongs", 400)
                self._end = nl + 1
                return self._end
            self._lines += 1
            if self._lines - 1 > self._max_fields:
                raise InvalidHandshake("too many header fields", 431)
            pos = nl + 1

    def _check_partial(self, buf: bytes | bytearray, pos: int) -> None:
        length = len(buf) - pos
        # A CR at the very end may be the first half of the CRLF to come.
        if length and buf[-1] == _CR:
            length -= 1
        self._check_length(length)
        # Every field slot is used and another line has begun that is not the
        # blank one: it can only be one field too many.
        if length and self._lines > 0 and self._lines - 1 == self._max_fields:
            raise InvalidHandshake("too many header fields", 431)

    def _check_length(self, length: int) -> None:
        if self._lines == 0:
            if length > self._start_limit:
                raise InvalidHandshake("start line too long", self._start_status)
        elif length > self._line_limit:
            raise InvalidHandshake("header line too long", 431)


def parse_request_head(
    buf: bytes | bytearray, limits: Limits, *, scanner: HeadScanner | None = None
) -> tuple[RequestHead, int] | None:
    """Parse an HTTP/1.1 request head at the start of ``buf``.

    Returns the head and the number of bytes it takes (the blank line
    included), or None when more data is needed. Pass the same ``scanner`` on
    each call over a growing buffer to make the scan incremental.

    Raises :class:`InvalidHandshake` whose ``status`` is 400 for a malformed
    head (see the module docstring), a missing, repeated or invalid ``Host``,
    ``Transfer-Encoding``, or a body where none may be; 411 for a plain
    ``POST`` without ``Content-Length``; 413 for a body over
    ``limits.max_request_body``; 414 for a request line over
    ``limits.max_request_line``; 431 for a header line over
    ``limits.max_header_line`` or more than ``limits.max_headers`` fields;
    505 for an HTTP version other than 1.1 and 1.0.
    """
    if scanner is None:
        scanner = HeadScanner(limits, request=True)
    end = scanner.scan(buf)
    if end is None:
        return None
    start, fields = _split_head(buf, end)
    method, target, version = _parse_request_line(start)
    headers = _parse_fields(fields)
    _check_host(headers, required=version == "HTTP/1.1")
    length = _request_body_length(method, headers, limits)
    return RequestHead(method, target, version, headers, length), end


def parse_response_head(
    buf: bytes | bytearray, limits: Limits, *, scanner: HeadScanner | None = None
) -> tuple[ResponseHead, int] | None:
    """Parse an HTTP/1.x response head at the start of ``buf``.

    Returns the head and the number of bytes it takes (the blank line
    included), or None when more data is needed; ``scanner`` as for
    :func:`parse_request_head`. HTTP/1.0 is accepted so that an old server's
    refusal can be reported with its status.

    Raises :class:`InvalidHandshake` on a malformed head or a limit exceeded
    (the status line is held to ``limits.max_request_line``).
    """
    if scanner is None:
        scanner = HeadScanner(limits, request=False)
    end = scanner.scan(buf)
    if end is None:
        return None
    start, fields = _split_head(buf, end)
    version, status, reason = _parse_status_line(start)
    headers = _parse_fields(fields)
    return ResponseHead(version, status, reason, headers), end


def _split_head(buf: bytes | bytearray, end: int) -> tuple[bytes, list[bytes]]:
    # The head ends with the CRLF of its last line and the blank line's CRLF.
    lines = bytes(buf[: end - 4]).split(b"\r\n")
    return lines[0], lines[1:]


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    # RFC 9112 §3: request-line = method SP request-target SP HTTP-version
    parts = line.split(b" ")
    if len(parts) != 3:
        raise InvalidHandshake("malformed request line", 400)
    method, target, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise InvalidHandshake("malformed request method", 400)
    if not _TARGET_RE.fullmatch(target):
        raise InvalidHandshake("malformed request target", 400)
    if not _VERSION_RE.fullmatch(version):
        raise InvalidHandshake("malformed HTTP version", 400)
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        # RFC 9110 §15.6.6: 505 for a major version we do not speak (HTTP/2's
        # preface included) and for minor versions we do not know.
        raise InvalidHandshake(f"HTTP version {version.decode('ascii')} not supported", 505)
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


def _parse_status_line(line: bytes) -> tuple[str, int, str]:
    # RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ];
    # the SP before an empty reason is often left out, so it is optional here.
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        raise InvalidHandshake("malformed status line")
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else b""
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise InvalidHandshake("unsupported HTTP version in status line")
    if not (len(code) == 3 and code.isdigit() and b"100" <= code <= b"599"):
        raise InvalidHandshake("malformed status code")
    if not _FIELD_VALUE_RE.fullmatch(reason):
        raise InvalidHandshake("control character in reason phrase")
    return version.decode("ascii"), int(code), reason.decode("latin-1")


def _parse_fields(lines: list[bytes]) -> Headers:
    headers = Headers()
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: a server may reject obs-fold with 400.
            raise InvalidHandshake("obsolete line folding in header", 400)
        name, colon, value = line.partition(b":")
        if not colon:
            raise InvalidHandshake("header line without a colon", 400)
        if not _TOKEN_RE.fullmatch(name):
            if name.rstrip(b" \t") != name:
                # RFC 9112 §5.1: whitespace between name and colon MUST get 400.
                raise InvalidHandshake("whitespace before the colon in a header line", 400)
            raise InvalidHandshake("invalid header name", 400)
        # RFC 9112 §5.1: optional whitespace around the value is not part of it.
        value = value.strip(b" \t")
        if not _FIELD_VALUE_RE.fullmatch(value):
            raise InvalidHandshake(f"control character in header {name.decode('ascii')}", 400)
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    return headers


def _check_host(headers: Headers, *, required: bool = True) -> None:
    hosts = headers.get_all("Host")
    # RFC 9112 §3.2: 400 for a missing Host, more than one, or an invalid one;
    # HTTP/1.0 had no Host (RFC 1945), so it is optional there.
    if not hosts:
        if not required:
            return
        raise InvalidHandshake("missing Host header", 400)
    if len(hosts) > 1:
        raise InvalidHandshake("more than one Host header", 400)
    if not _HOST_RE.fullmatch(hosts[0]):
        raise InvalidHandshake("invalid Host header", 400)


# Methods whose requests may carry a body here (RFC 9110 §9.3.3).
_BODY_METHODS = frozenset({"POST"})
# More digits than this cannot be a length under any sane limit; int() is not
# asked to read them.
_MAX_LENGTH_DIGITS = 18


def _request_body_length(method: str, headers: Headers, limits: Limits) -> int:
    # RFC 6455 §4.1: the upgrade is a GET without a body. A body announced in
    # any way where none may be is refused rather than skipped: it would
    # otherwise be read as frames (or as the next request).
    if "Transfer-Encoding" in headers:
        # RFC 9112 §6.1: chunked is not read here; refusing it also removes
        # the Content-Length / Transfer-Encoding disagreement smuggling uses.
        raise InvalidHandshake("request with a body (Transfer-Encoding)", 400)
    values = headers.get_all("Content-Length")
    items = [item.strip(" \t") for value in values for item in value.split(",")]
    for item in items:
        if not _DIGITS_RE.fullmatch(item):
            raise InvalidHandshake("invalid Content-Length", 400)
    takes_body = method in _BODY_METHODS and "Upgrade" not in headers
    if not takes_body:
        if any(item.strip("0") for item in items):
            raise InvalidHandshake("request with a body (Content-Length)", 400)
        return 0
    if not items:
        # RFC 9110 §15.5.12: 411 when the server wants a Content-Length.
        raise InvalidHandshake("POST without Content-Length", 411)
    if len(items) != 1:
        # RFC 9112 §6.3 item 5 lets a recipient accept repeated equal values;
        # one field with one number is all a client ever needs to send.
        raise InvalidHandshake("more than one Content-Length value", 400)
    digits = items[0].lstrip("0") or "0"
    if len(digits) > _MAX_LENGTH_DIGITS or int(digits) > limits.max_request_body:
        # RFC 9110 §15.5.14: answered from the head, before the body is read.
        raise InvalidHandshake(f"request body larger than {limits.max_request_body} bytes", 413)
    return int(digits)


def build_request(method: str, target: str, headers: Headers) -> bytes:
    """Return the bytes of an HTTP/1.1 request head: request line, fields, blank line.

    Raises :class:`LocalProtocolError` when the method is not a token, the
    target is not printable ASCII, or a field could not be sent as given (a
    name that is not a token, a value with a control character such as CR or
    LF, or one not encodable in ISO-8859-1): refusing is what keeps a caller's
    strings from injecting header lines.
    """
    if not _TOKEN_STR_RE.fullmatch(method):
        raise LocalProtocolError(f"invalid HTTP method: {method!r}")
    if not _TARGET_STR_RE.fullmatch(target):
        raise LocalProtocolError(f"invalid request target: {target!r}")
    out = [f"{method} {target} HTTP/1.1\r\n".encode("ascii")]
    out.extend(_encode_fields(headers))
    out.append(b"\r\n")
    return b"".join(out)


# RFC 9110 §6.4.1, §8.6: these responses never carry content.
_NO_BODY_STATUSES = frozenset({204, 304})


def build_response(status: int, headers: Headers, body: bytes = b"", reason: str | None = None) -> bytes:
    """Return the bytes of an HTTP/1.1 response: status line, fields, blank line, body.

    ``reason`` defaults to the standard phrase of ``status`` (empty for an
    unregistered status). ``Content-Length`` is added for every status that
    may have content (all but 1xx, 204 and 304), unless ``headers`` already
    hold the right one.

    Raises :class:`LocalProtocolError` for a status outside 100-599, a body
    with a status that cannot have one, a ``Content-Length`` in ``headers``
    that does not match ``body`` or comes with a 1xx or 204, any
    ``Transfer-Encoding`` (the body is always sent whole), a reason with a
    control character, or a field :func:`build_request` would refuse.
    """
    if isinstance(status, bool) or not 100 <= status <= 599:
        raise LocalProtocolError(f"invalid HTTP status: {status!r}")
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    if not _FIELD_VALUE_STR_RE.fullmatch(reason):
        raise LocalProtocolError(f"invalid reason phrase: {reason!r}")
    if "Transfer-Encoding" in headers:
        raise LocalProtocolError("Transfer-Encoding is not supported; the body is sent with Content-Length")
    lengths = headers.get_all("Content-Length")
    fields = Headers(headers)
    if status < 200 or status in _NO_BODY_STATUSES:
        if body:
            raise LocalProtocolError(f"a {status} response cannot have a body")
        # RFC 9110 §8.6: no Content-Length in a 1xx or 204 response.
        if lengths and status != 304:
            raise LocalProtocolError(f"a {status} response cannot have Content-Length")
    elif not lengths:
        fields.add("Content-Length", str(len(body)))
    elif lengths != [str(len(body))]:
        raise LocalProtocolError("Content-Length does not match the body")
    # The patterns above admit only ISO-8859-1 characters, so encoding cannot fail.
    out = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")]
    out.extend(_encode_fields(fields))
    out.append(b"\r\n")
    out.append(bytes(body))
    return b"".join(out)


def _encode_fields(headers: Headers) -> list[bytes]:
    out: list[bytes] = []
    for name, value in headers.items():
        if not _TOKEN_STR_RE.fullmatch(name):
            raise LocalProtocolError(f"invalid header name: {name!r}")
        # RFC 9110 §5.5: CR, LF, NUL and other controls are never valid in a
        # value; characters beyond ISO-8859-1 cannot be sent at all.
        if not _FIELD_VALUE_STR_RE.fullmatch(value):
            raise LocalProtocolError(f"invalid character in header {name}: {value!r}")
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    return out
