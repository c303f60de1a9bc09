"""Origin allow-lists: refuse WebSocket upgrades from pages of other sites.

A browser lets any page open a WebSocket to any server, and sends the
server's cookies and client certificate with it. The only thing telling a
server which page asked is the ``Origin`` header, which the browser sets and
scripts cannot forge (RFC 6455 §10.2). A server that accepts upgrades from
any origin is open to cross-site WebSocket hijacking, so :class:`OriginPolicy`
compares the header with a configured list.

Non-browser clients usually send no ``Origin`` at all; whether such a request
passes is the policy's ``allow_missing`` choice. An Origin check is therefore
not authentication: anything that is not a browser can send any value.

Origins are compared in a normalised form (:func:`normalize_origin`): the
ASCII serialisation of RFC 6454 §6.2 with the scheme and host lower-cased,
the host IDNA-encoded, an IPv6 literal in brackets and in its canonical text,
and the port left out when it is the scheme's default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final

from ..exceptions import Forbidden
from ..protocol.events import Request
from ..uri import normalize_hostname

__all__ = ["OriginPolicy", "normalize_origin"]

# RFC 6454 §7.1: the header carries "null" when the origin is opaque (a
# sandboxed iframe, a file:// page, a data: URL). It is spelled with %x
# values in the ABNF, so it is case-sensitive.
_NULL: Final = "null"

# RFC 6454 §4 step 4 takes the default port from the scheme; WHATWG URL
# serialisation leaves a default port out, so a browser never sends ":443"
# for https. The WebSocket schemes are here for configured values.
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# Any origin longer than this is garbage; the bound also keeps user patterns
# from spending time on an attacker's eight kilobytes of header.
_MAX_LENGTH: Final = 1024

# serialized-origin = scheme "://" host [ ":" port ]   (RFC 6454 §7.1)
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )  (RFC 3986 §3.1)
_SHAPE: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[^\]]*\]|[^:/?#@\[\]]*)"
    r"(?::(?P<port>[^/?#]*))?"
)

# Characters that IDNA 2003 (Python's "idna" codec) maps differently from
# IDNA 2008 / UTS #46 non-transitional processing, which browsers use:
# "straße" becomes "strasse" here but "xn--strae-oqa" in a browser. Such a
# configured name would silently never match, so it is refused instead.
_IDNA_DEVIATIONS: Final = frozenset("\u00df\u03c2\u200c\u200d")

# The names a server on the loopback interface is reached by.
_LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")

# Bind addresses that mean "every interface": a browser never uses them as a
# host, so a server bound to one only knows its loopback names.
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared, never bound


def normalize_origin(value: str) -> str:
    """Return ``value``, a serialised origin, in the form policies compare.

    ``"null"`` is returned unchanged. Otherwise ``value`` must be
    ``scheme://host[:port]`` with nothing after the port: no path, not even
    a trailing slash, no user information, query or fragment. The scheme and
    host are lower-cased, a non-ASCII host name is IDNA-encoded, an IPv4
    address must be a dotted quad, an IPv6 literal is rewritten in its
    canonical form (RFC 5952) inside brackets, and the port is dropped when
    it is the default for http, https, ws or wss.

    Raises :class:`ValueError` when ``value`` is not a serialised origin or
    not a str, is longer than 1024 characters, holds whitespace or control
    characters, has an empty or out-of-range port, a malformed host, or a
    host name IDNA 2003 and 2008 would encode differently (``ß``, ``ς``,
    ZWJ, ZWNJ: write those in their ``xn--`` form).
    """
    if not isinstance(value, str):
        raise ValueError(f"an origin must be a str, not {type(value).__name__}")
    if value == _NULL:
        return value
    if len(value) > _MAX_LENGTH:
        raise ValueError(f"origin longer than {_MAX_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"origin {value!r} holds whitespace or a control character")
    match = _SHAPE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not an origin: expected scheme://host[:port] with no path, "
            "query, fragment or user information"
        )
    scheme = match["scheme"].lower()
    host = _normalize_host(match["host"], value)
    port_text = match["port"]
    if port_text is None:
        return f"{scheme}://{host}"
    port = _parse_port(port_text, value)
    if _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _parse_port(text: str, origin: str) -> int:
    """Return the port number of ``origin``; raise ValueError unless 1 to 65535."""
    # str.isdigit accepts non-ASCII digits and int() accepts "+80" and "8_0";
    # RFC 3986 §3.2.3 allows ASCII digits only. An empty port is legal in a
    # URI but never in a browser's Origin, and only hides a typo in a config.
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ValueError(f"{origin!r} has an invalid port {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{origin!r} has a port out of range: {port}")
    return port


def _normalize_host(host: str, origin: str) -> str:
    """Return ``host`` as it appears in a normalised origin; raise ValueError if malformed."""
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{origin!r} has an invalid IPv6 literal {host!r}") from None
        # A zone identifier (fe80::1%eth0) names an interface of the client;
        # it is never part of an origin a browser sends.
        if address.scope_id is not None:
            raise ValueError(f"{origin!r} has an IPv6 zone identifier; origins carry none")
        return f"[{_ipv6_text(address)}]"
    if not host:
        raise ValueError(f"{origin!r} has no host")
    if _IDNA_DEVIATIONS.intersection(host):
        raise ValueError(
            f"{origin!r}: IDNA 2003 and 2008 encode this host name differently; "
            "write it in its xn-- form, as the browser sends it"
        )
    # A trailing dot makes a different origin in browsers ("example.com." is
    # not "example.com"): normalize_hostname keeps it.
    try:
        return normalize_hostname(host)
    except ValueError as exc:
        raise ValueError(f"{origin!r}: {exc}") from None


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    """Write ``address`` as hex pieces with the longest zero run compressed (RFC 5952 §4).

    ``str(address)`` writes IPv4-mapped addresses with a dotted tail on some
    Python versions and not on others; browsers always use hex pieces
    (WHATWG URL "IPv6 serializer"), so this does not depend on the version.
    """
    packed = address.packed
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    # RFC 5952 §4.2.2-3: compress the longest run of two or more zero
    # pieces, the first one when two runs are equally long.
    best_start, best_length = -1, 1
    run_start, run_length = -1, 0
    for index, piece in enumerate(pieces):
        if piece == 0:
            if run_length == 0:
                run_start = index
            run_length += 1
            if run_length > best_length:
                best_start, best_length = run_start, run_length
        else:
            run_length = 0
    texts = [f"{piece:x}" for piece in pieces]
    if best_start == -1:
        return ":".join(texts)
    head = ":".join(texts[:best_start])
    tail = ":".join(texts[best_start + best_length :])
    return f"{head}::{tail}"


def _shown(value: str) -> str:
    """Quote a header value for a message, cut short: it is the peer's text."""
    return repr(value[:100] + "...") if len(value) > 100 else repr(value)


class OriginPolicy:
    """Which ``Origin`` header values may open a WebSocket (RFC 6455 §10.2).

    ``allowed`` lists origins compared exactly after
    :func:`normalize_origin`; ``patterns`` are regular expressions that must
    match the whole normalised origin (:func:`re.fullmatch`), for example
    ``r"https://[a-z0-9-]+\\.example\\.com"``. Patterns see the lower-case,
    IDNA-encoded form, and an unescaped ``.`` matches any character.

    The opaque origin ``"null"`` (sandboxed frames, ``file:`` pages) is
    allowed only when ``allowed`` lists it; patterns never match it, since
    every sandboxed page on the web shares it.

    ``allow_missing`` decides about requests without an ``Origin`` header.
    Browsers always send one with a WebSocket upgrade, so a missing header
    means a non-browser client (a script, another server), which the header
    could not stop anyway.

    Raises :class:`ValueError` when a configured origin is malformed (see
    :func:`normalize_origin`) or a pattern does not compile, and
    :class:`TypeError` when ``allowed`` or ``patterns`` is a single str
    rather than a collection of them.
    """

    __slots__ = ("_allow_missing", "_exact", "_patterns")

    def __init__(
        self,
        allowed: Iterable[str] = (),
        *,
        patterns: Iterable[str] = (),
        allow_missing: bool = False,
    ) -> None:
        # A lone str is iterable: OriginPolicy("https://a.example") would
        # otherwise allow the one-letter "origins" h, t, p, s...
        if isinstance(allowed, str):
            raise TypeError("allowed must be a collection of origins, not a single str")
        if isinstance(patterns, str):
            raise TypeError("patterns must be a collection of regular expressions, not a single str")
        self._exact = frozenset(normalize_origin(origin) for origin in allowed)
        self._patterns = tuple(_compile(pattern) for pattern in patterns)
        self._allow_missing = bool(allow_missing)

    @classmethod
    def for_server(
        cls,
        scheme: str,
        host: str,
        port: int,
        *,
        allowed: Iterable[str] = (),
        patterns: Iterable[str] = (),
        allow_missing: bool = False,
    ) -> OriginPolicy:
        """Return a policy that allows pages served by this server, plus ``allowed``.

        ``scheme`` is ``"https"`` or ``"http"``, the scheme of the server's
        pages (``"wss"`` and ``"ws"`` are read as those: a page a server
        serves over TLS has an https origin). ``host`` is the name browsers
        use to reach the server, an IPv6 address with or without brackets.

        When ``host`` is ``localhost``, ``127.0.0.1`` or ``::1``, all three
        spellings are allowed, since a browser on the machine may use any.
        A wildcard bind address (``""``, ``0.0.0.0``, ``::``) is no name a
        browser can use: only the three loopback spellings are allowed then,
        and a public name has to be added through ``allowed``.

        Raises :class:`ValueError` for another scheme, a port outside 1 to
        65535, or a malformed host, ``allowed`` origin or pattern, and
        :class:`TypeError` when ``allowed`` or ``patterns`` is a single str.
        """
        if isinstance(allowed, str):
            raise TypeError("allowed must be a collection of origins, not a single str")
        page_scheme = {"https": "https", "wss": "https", "http": "http", "ws": "http"}.get(scheme.lower())
        if page_scheme is None:
            raise ValueError(f"scheme must be https or http (or wss, ws), not {scheme!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an int from 1 to 65535, not {port!r}")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        hosts: Iterable[str]
        if bare.lower() in _WILDCARD_HOSTS or bare.lower() in _LOOPBACK_HOSTS:
            hosts = _LOOPBACK_HOSTS
        else:
            hosts = (bare,)
        own = [f"{page_scheme}://{f'[{h}]' if ':' in h else h}:{port}" for h in hosts]
        return cls([*own, *allowed], patterns=patterns, allow_missing=allow_missing)

    @property
    def allowed(self) -> frozenset[str]:
        """The exactly matched origins, normalised."""
        return self._exact

    @property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        """The compiled patterns, in the order given."""
        return self._patterns

    @property
    def allow_missing(self) -> bool:
        """Whether a request without an ``Origin`` header passes."""
        return self._allow_missing

    def allows(self, origin: str) -> bool:
        """Tell whether the ``Origin`` value ``origin`` is allowed.

        A malformed value is not allowed; this never raises for a str.
        """
        # Browsers send the ASCII serialisation (RFC 6454 §6.2); a non-ASCII
        # value came from something else and is refused rather than mapped.
        if not origin.isascii():
            return False
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            return False
        if normalized in self._exact:
            return True
        if normalized == _NULL:
            return False
        return any(pattern.fullmatch(normalized) for pattern in self._patterns)

    def __call__(self, connection: object, request: Request) -> None:
        """Run as a guard of :func:`wsskit.serve` (``guards=[policy]``): :meth:`check`."""
        self.check(request)

    def check(self, request: Request) -> None:
        """Let ``request`` through, or raise :class:`~wsskit.exceptions.Forbidden` (403).

        Raises ``Forbidden("missing Origin")`` when the request has no
        ``Origin`` header and the policy does not allow that,
        ``Forbidden("multiple Origin headers")`` when it has more than one,
        and ``Forbidden("origin not allowed: ...")`` when its value is
        malformed (an empty value, a space-separated list) or not allowed.
        """
        values = request.headers.get_all("Origin")
        if not values:
            if self._allow_missing:
                return
            raise Forbidden("missing Origin")
        # RFC 6454 §7.3: a user agent sends at most one Origin header. Two of
        # them mean a proxy or a forger added one, and checking either could
        # be checking the wrong one.
        if len(values) > 1:
            raise Forbidden("multiple Origin headers")
        # RFC 6454 §7.1 allows a space-separated list of origins, but the
        # Fetch standard (which browsers follow) sends exactly one, so a list
        # fails normalisation and is refused like any malformed value.
        value = values[0].strip(" \t")
        if not self.allows(value):
            raise Forbidden(f"origin not allowed: {_shown(value)}")

    def __repr__(self) -> str:
        return (
            f"OriginPolicy({sorted(self._exact)!r}, "
            f"patterns={[p.pattern for p in self._patterns]!r}, allow_missing={self._allow_missing!r})"
        )


def _compile(pattern: str) -> re.Pattern[str]:
    """Compile an origin pattern; raise ValueError with the pattern when it is invalid."""
    if not isinstance(pattern, str):
        raise TypeError(f"an origin pattern must be a str, not {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid origin pattern {pattern!r}: {exc}") from None
