"""The PROXY protocol header (HAProxy's proxy-protocol.txt), versions 1 and 2: sans-I/O.

A load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, nginx's
``proxy_protocol on;``) writes one header at the very start of each TCP
connection saying whom it carries: the client's address and port (the
*source*) and the address it reached (the *destination*). Then the client's
own bytes follow, untouched (TLS, HTTP...).

:class:`ProxyHeaderParser` reads that header from bytes fed to it in pieces
of any size::

    parser = ProxyHeaderParser()
    header = parser.receive_data(data)      # None: more bytes needed
    if header is not None:
        header.source                       # ("203.0.113.7", 51234), or None
        parser.rest                         # the client's bytes after the header

Strict on purpose: the header decides which address every limit and log line
sees, so anything not exactly as the specification draws it raises
:class:`InvalidProxyHeader` with the reason, and so does a connection that
does not start with a header at all.

Bounds: a version 1 header is at most 107 bytes (the specification's
limit). A version 2 header may announce up to 16 + 65535 bytes; this parser
refuses one longer than ``max_size`` (4 KiB by default: addresses take 52
bytes at most, and what HAProxy adds as TLVs, such as the ALPN, authority,
unique ID and TLS details, stays far below it). So at most ``max_size``
bytes are held before a decision.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "V1_SIGNATURE",
    "V2_SIGNATURE",
    "V1_MAX_SIZE",
    "DEFAULT_MAX_SIZE",
    "InvalidProxyHeader",
    "ProxyHeader",
    "ProxyHeaderParser",
]

#: How a version 1 header starts.
V1_SIGNATURE = b"PROXY "
#: The 12 bytes that start a version 2 header (proxy-protocol.txt §2.2).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 header, CRLF included (§2.1).
V1_MAX_SIZE = 107
#: The longest version 2 header accepted by default (the 16 fixed bytes included).
DEFAULT_MAX_SIZE = 4096

_V2_FIXED = 16  # signature, version and command, family and protocol, length
# Address block sizes (§2.2): two IPv4 addresses and two ports; the same in
# IPv6; two 108-byte Unix socket paths.
_INET_SIZE = 12
_INET6_SIZE = 36
_UNIX_SIZE = 216
_PROTOCOLS: dict[str, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]] = {
    "TCP4": ipaddress.IPv4Address,
    "TCP6": ipaddress.IPv6Address,
}


class InvalidProxyHeader(ValueError):
    """The connection does not start with a valid PROXY header; the message says why."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY header.

    ``source`` and ``destination`` are ``(host, port)`` with ``host`` in
    its canonical text form, or both None when the header says to keep the
    real connection's endpoints: a version 2 LOCAL command (a health check
    by the proxy itself), ``PROXY UNKNOWN`` in version 1, or an address
    family without IP addresses (UNSPEC, UNIX) in version 2.
    """

    version: int
    #: ``"PROXY"`` (relayed for a client) or ``"LOCAL"`` (the proxy's own connection).
    command: str
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    #: The size of the header in bytes.
    size: int = 0


class ProxyHeaderParser:
    """Reads one PROXY header from the start of a connection.

    ``versions`` lists those accepted (``(1, 2)`` by default); ``max_size``
    bounds a version 2 header (see the module docstring). Raises
    :class:`ValueError` for invalid options.
    """

    __slots__ = ("_buffer", "_max_size", "_versions", "header", "rest")

    def __init__(self, *, versions: tuple[int, ...] = (1, 2), max_size: int = DEFAULT_MAX_SIZE) -> None:
        if not versions or any(version not in (1, 2) for version in versions):
            raise ValueError(f"versions must be among (1, 2), not {versions!r}")
        if max_size < _V2_FIXED + _INET6_SIZE:
            raise ValueError(f"max_size must be at least {_V2_FIXED + _INET6_SIZE}, not {max_size}")
        self._versions = tuple(versions)
        self._max_size = max_size
        self._buffer = bytearray()
        #: The header, once complete.
        self.header: ProxyHeader | None = None
        #: The bytes received after the header (empty until it is complete).
        self.rest = b""

    def receive_data(self, data: bytes | bytearray | memoryview) -> ProxyHeader | None:
        """Feed bytes from the start of the connection.

        Returns the :class:`ProxyHeader` once it is complete (then
        :attr:`rest` holds what followed it), else None. Raises
        :class:`InvalidProxyHeader` as soon as the bytes cannot start a valid
        header of an accepted version, and :class:`RuntimeError` when called
        again after the header was complete.
        """
        if self.header is not None:
            raise RuntimeError("the PROXY header is complete; the rest is the application's")
        buffer = self._buffer
        buffer += data
        header, size = self._parse(buffer)
        if header is None:
            return None
        self.header = header
        self.rest = bytes(buffer[size:])
        self._buffer = bytearray()
        return header

    def _parse(self, buffer: bytearray) -> tuple[ProxyHeader | None, int]:
        # Which version: decided by the first byte, checked against the
        # whole signature as far as it has arrived.
        if not buffer:
            return None, 0
        if buffer[:1] == V2_SIGNATURE[:1]:
            if 2 not in self._versions:
                raise InvalidProxyHeader("a PROXY protocol version 2 header, which is not accepted here")
            _check_prefix(buffer, V2_SIGNATURE, "version 2")
            return self._parse_v2(buffer)
        if buffer[:1] == V1_SIGNATURE[:1]:
            if 1 not in self._versions:
                raise InvalidProxyHeader("a PROXY protocol version 1 header, which is not accepted here")
            _check_prefix(buffer, V1_SIGNATURE, "version 1")
            return _parse_v1(buffer)
        raise InvalidProxyHeader("the connection does not start with a PROXY protocol header")

    def _parse_v2(self, buffer: bytearray) -> tuple[ProxyHeader | None, int]:
        if len(buffer) < _V2_FIXED:
            return None, 0
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2:
            raise InvalidProxyHeader(f"PROXY version 2 signature with version nibble {version}")
        if command not in (0, 1):
            raise InvalidProxyHeader(f"PROXY version 2 with unknown command {command}")
        family, transport = buffer[13] >> 4, buffer[13] & 0x0F
        length = int.from_bytes(buffer[14:16], "big")
        size = _V2_FIXED + length
        if size > self._max_size:
            raise InvalidProxyHeader(
                f"PROXY version 2 header of {size} bytes, over the limit of {self._max_size}"
            )
        if len(buffer) < size:
            return None, 0
        if command == 0:
            # §2.2: LOCAL: the proxy's own connection (a health check); the
            # block, family included, is to be ignored.
            return ProxyHeader(2, "LOCAL", size=size), size
        block = bytes(buffer[_V2_FIXED:size])
        if family == 0:
            if transport != 0:
                raise InvalidProxyHeader(f"PROXY version 2 UNSPEC family with transport {transport}")
            return ProxyHeader(2, "PROXY", size=size), size
        if family > 3:
            raise InvalidProxyHeader(f"PROXY version 2 with unknown address family {family}")
        if transport == 2:
            raise InvalidProxyHeader(
                "PROXY version 2 header for a datagram (UDP) flow on a stream connection"
            )
        if transport != 1:
            raise InvalidProxyHeader(f"PROXY version 2 with unknown transport protocol {transport}")
        needed = {1: _INET_SIZE, 2: _INET6_SIZE, 3: _UNIX_SIZE}[family]
        if length < needed:
            raise InvalidProxyHeader(f"PROXY version 2 address block of {length} bytes, {needed} needed")
        _check_tlvs(block, needed)
        if family == 3:
            # Unix sockets: no address a limit or a log can use.
            return ProxyHeader(2, "PROXY", size=size), size
        width = 4 if family == 1 else 16
        ip_class = ipaddress.IPv4Address if family == 1 else ipaddress.IPv6Address
        source = str(ip_class(block[:width]))
        destination = str(ip_class(block[width : 2 * width]))
        ports = block[2 * width : 2 * width + 4]
        source_port = int.from_bytes(ports[:2], "big")
        destination_port = int.from_bytes(ports[2:], "big")
        return ProxyHeader(2, "PROXY", (source, source_port), (destination, destination_port), size), size


def _check_prefix(buffer: bytearray, signature: bytes, name: str) -> None:
    count = min(len(buffer), len(signature))
    if buffer[:count] != signature[:count]:
        raise InvalidProxyHeader(f"bytes that start like a PROXY {name} header but are none")


def _check_tlvs(block: bytes, start: int) -> None:
    # §2.2.x: after the addresses come TLVs (type, 16-bit length, value);
    # they are skipped, but each must fit exactly in the announced length.
    offset = start
    end = len(block)
    while offset < end:
        if end - offset < 3:
            raise InvalidProxyHeader("PROXY version 2 TLV cut short by the header length")
        value_length = int.from_bytes(block[offset + 1 : offset + 3], "big")
        offset += 3 + value_length
        if offset > end:
            raise InvalidProxyHeader("PROXY version 2 TLV longer than the header")


def _parse_v1(buffer: bytearray) -> tuple[ProxyHeader | None, int]:
    # §2.1: "PROXY" SP protocol SP source SP destination SP source-port SP
    # destination-port CRLF, in 107 bytes at most; "PROXY UNKNOWN" may be
    # followed by anything up to the CRLF.
    end = buffer.find(b"\r\n", 0, V1_MAX_SIZE)
    if end < 0:
        if len(buffer) >= V1_MAX_SIZE:
            raise InvalidProxyHeader(f"PROXY version 1 line longer than {V1_MAX_SIZE} bytes")
        if b"\n" in buffer or b"\r" in buffer[:-1]:
            raise InvalidProxyHeader("PROXY version 1 line not ended by CRLF")
        return None, 0
    size = end + 2
    line = bytes(buffer[:end])
    if b"\n" in line or b"\r" in line:
        raise InvalidProxyHeader("PROXY version 1 line not ended by CRLF")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidProxyHeader("PROXY version 1 line with non-ASCII bytes") from None
    fields = text.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(1, "PROXY", size=size), size
    if len(fields) != 6:
        raise InvalidProxyHeader("PROXY version 1 line without its six single-space separated fields")
    _, protocol, source, destination, source_port, destination_port = fields
    ip_class = _PROTOCOLS.get(protocol)
    if ip_class is None:
        raise InvalidProxyHeader(f"PROXY version 1 with unknown protocol {protocol[:8]!r}")
    return (
        ProxyHeader(
            1,
            "PROXY",
            (_v1_address(ip_class, source), _v1_port(source_port)),
            (_v1_address(ip_class, destination), _v1_port(destination_port)),
            size,
        ),
        size,
    )


def _v1_address(ip_class: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], text: str) -> str:
    # ipaddress refuses leading zeros in IPv4 and zone indexes need "%":
    # refused too, since a zone means nothing to another host.
    if "%" in text:
        raise InvalidProxyHeader(f"PROXY version 1 address with a zone: {text[:45]!r}")
    try:
        return str(ip_class(text))
    except ValueError:
        family = "IPv4" if ip_class is ipaddress.IPv4Address else "IPv6"
        raise InvalidProxyHeader(f"PROXY version 1 with an invalid {family} address {text[:45]!r}") from None


def _v1_port(text: str) -> int:
    # A decimal number in 0..65535, without sign or leading zero.
    if not text.isascii() or not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise InvalidProxyHeader(f"PROXY version 1 with an invalid port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise InvalidProxyHeader(f"PROXY version 1 with an out of range port {port}")
    return port
