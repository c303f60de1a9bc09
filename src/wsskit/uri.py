"""Parse ``ws://`` and ``wss://`` URIs (RFC 6455 §3).

::

    ws-URI  = "ws:"  "//" host [ ":" port ] path [ "?" query ]
    wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]

:func:`parse_uri` is strict where leniency would be a security problem (a
fragment, whitespace or control characters that could end up in the request
line, an ambiguous numeric host) and forgiving where RFC 3986 allows it (an
upper-case scheme, an empty port, a missing path).
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri", "normalize_hostname"]

# RFC 6455 §3: "The port component is OPTIONAL; the default for "ws" is port 80,
# while the default for "wss" is port 443."
_DEFAULT_PORTS = {False: 80, True: 443}

# Characters allowed in a DNS label as written in a URI. The underscore is not
# valid in a hostname (RFC 952/1123) but is common in container and service
# names, and resolvers accept it.
# Characters of a DNS label once lower-cased. The underscore is not valid in
# a host name (RFC 1123) but shows up in container and service names, and
# browsers accept it in URLs and Origins.
_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_")

# RFC 3986 §2.3 unreserved characters.
_ZONE_CHARS = frozenset(string.ascii_letters + string.digits + "-._~")


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    ``host`` carries no brackets: an IPv6 literal is stored as ``"::1"``, a
    domain name in lower-case ASCII (internationalised names IDNA-encoded).
    ``path`` is the resource name sent in the request line: the path and
    ``?query``, never empty. ``user`` and ``password`` are percent-decoded and
    ``None`` when the URI carries none; the password is kept out of ``repr``.
    """

    secure: bool
    host: str
    port: int
    path: str = "/"
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def resource_name(self) -> str:
        """The request target of the opening handshake (RFC 6455 §3, §4.1)."""
        return self.path

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header (RFC 6455 §4.1 item 4, RFC 7230 §5.4).

        IPv6 literals are bracketed; the port is left out when it is the
        default for the scheme (80 for ``ws``, 443 for ``wss``).
        """
        host = self.host
        if ":" in host:
            # RFC 6874: a zone identifier's "%" is itself percent-encoded.
            host = "[" + host.replace("%", "%25") + "]"
        if self.port == _DEFAULT_PORTS[self.secure]:
            return host
        return f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a ``ws://`` or ``wss://`` URI.

    The scheme is matched case-insensitively. A missing path becomes ``/``;
    non-ASCII characters in the path and query are percent-encoded as UTF-8;
    an empty port (``ws://host:/``) means the default port.

    Raises :class:`~wsskit.exceptions.InvalidURI` when the scheme is not
    ``ws`` or ``wss``, the host is missing or malformed, the URI has a
    fragment (RFC 6455 §3 forbids them), the port is not a number from 1 to
    65535, or the URI contains whitespace or control characters.
    """
    if not isinstance(uri, str):
        raise InvalidURI(f"URI must be a str, not {type(uri).__name__}")
    _check_characters(uri)

    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a ws:// or wss:// URI")
    secure = scheme == "wss"
    if not rest.startswith("//"):
        raise InvalidURI(f"{uri!r} has no authority: expected {scheme}://host")
    rest = rest[2:]

    # RFC 6455 §3: "Fragment identifiers are meaningless in the context of
    # WebSocket URIs and MUST NOT be used on these URIs. [...] the character
    # '#', when not indicating the start of a fragment, MUST be escaped as %23."
    if "#" in rest:
        raise InvalidURI(f"{uri!r} has a fragment; WebSocket URIs must not (RFC 6455 §3)")

    # RFC 3986 §3.2: the authority ends at the first "/" or "?".
    end = len(rest)
    for delimiter in "/?":
        index = rest.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority, path = rest[:end], rest[end:]

    user: str | None = None
    password: str | None = None
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        raw_user, has_password, raw_password = userinfo.partition(":")
        try:
            user = unquote(raw_user, errors="strict")
            password = unquote(raw_password, errors="strict") if has_password else None
        except UnicodeDecodeError:
            raise InvalidURI(f"{uri!r} has user information that is not valid UTF-8") from None

    host, port_text = _split_host_port(hostport, uri)
    host = _normalize_host(host, uri)
    port = _parse_port(port_text, uri) if port_text else _DEFAULT_PORTS[secure]

    if not path.startswith("/"):
        path = "/" + path
    path = _encode_non_ascii(path)

    return WebSocketURI(secure=secure, host=host, port=port, path=path, user=user, password=password)


def _check_characters(uri: str) -> None:
    """Raise InvalidURI if ``uri`` holds whitespace or control characters.

    A CR or LF here would let the URI inject header lines into the opening
    handshake; other whitespace is not allowed in a URI (RFC 3986 §2) and
    silently stripping it (as some parsers do) hides mistakes.
    """
    if not uri:
        raise InvalidURI("empty URI")
    for char in uri:
        code = ord(char)
        if code <= 0x20 or 0x7F <= code <= 0x9F or char.isspace():
            raise InvalidURI(f"{uri!r} contains whitespace or a control character ({char!r})")


def _split_host_port(hostport: str, uri: str) -> tuple[str, str]:
    """Split ``host[:port]`` or ``[v6]:port``; the port text may be empty."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise InvalidURI(f"{uri!r} has an unclosed IPv6 literal")
        host, after = hostport[: close + 1], hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise InvalidURI(f"{uri!r} has characters after the IPv6 literal")
        return host, after[1:]
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return hostport, ""
    if ":" in host:
        raise InvalidURI(f"{uri!r}: an IPv6 address must be in brackets")
    return host, port


def _parse_port(text: str, uri: str) -> int:
    """Return the port number; only 1 to 5 ASCII digits from 1 to 65535 are allowed."""
    # str.isdigit accepts non-ASCII digits and int() accepts "+80" or "8_0".
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise InvalidURI(f"{uri!r} has an invalid port {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise InvalidURI(f"{uri!r} has a port out of range: {port}")
    return port


def _normalize_host(host: str, uri: str) -> str:
    """Return the host without brackets, lower-case, IDNA-encoded if a name.

    Raises InvalidURI if the host is empty or not a valid IP literal or name.
    """
    if host.startswith("["):
        literal = host[1:-1]
        # RFC 6874: a zone identifier is introduced by a percent-encoded "%".
        address, pct, zone = literal.partition("%25")
        if pct:
            zone = unquote(zone)
            # RFC 6874 §2: ZoneID = 1*( unreserved / pct-encoded ); keep it to
            # unreserved characters so nothing odd reaches the Host header.
            if not zone or not set(zone) <= _ZONE_CHARS:
                raise InvalidURI(f"{uri!r} has an invalid IPv6 zone identifier")
            literal = address + "%" + zone
        try:
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise InvalidURI(f"{uri!r} has an invalid IPv6 literal {host!r}") from None

    try:
        name = unquote(host, errors="strict")
    except UnicodeDecodeError:
        raise InvalidURI(f"{uri!r} has a host that is not valid UTF-8") from None
    try:
        return normalize_hostname(name)
    except ValueError as exc:
        raise InvalidURI(f"{uri!r}: {exc}") from None


def normalize_hostname(name: str) -> str:
    """Return a host name or IPv4 address in the form to compare and send.

    Non-ASCII names are IDNA-encoded, names lower-cased; a name whose last
    label is numeric must be a dotted-quad IPv4 address. Raises
    :class:`ValueError` saying what is wrong: an empty name, an invalid
    IPv4 address, a name over 253 characters, or an invalid label.
    """
    if not name:
        raise ValueError("no host")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"invalid internationalised host name: {exc}") from None
    name = name.lower()
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if labels[-1].isdigit():
        # A name ending in a numeric label is an IPv4 address or nothing.
        # Resolvers and browsers read "127.1" or "0x7f.1" as 127.0.0.1 while
        # certificate and origin checks compare the text: only the dotted quad.
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise ValueError(f"invalid IPv4 address {name!r}") from None
    if len(name.rstrip(".")) > 253:
        raise ValueError("host name longer than 253 characters")
    for label in labels:
        # RFC 1035 §2.3.4: labels are 1 to 63 octets; RFC 1123 §2.1.
        if not 1 <= len(label) <= 63 or not set(label) <= _LABEL_CHARS or label[0] == "-" or label[-1] == "-":
            raise ValueError(f"invalid host name {name!r}")
    return name


def _encode_non_ascii(path: str) -> str:
    """Percent-encode non-ASCII characters as UTF-8 (RFC 3986 §2.5)."""
    if path.isascii():
        return path
    return "".join(char if char.isascii() else quote(char, safe="") for char in path)
