"""Reading the PROXY protocol header on accepted TCP connections, from trusted proxies only.

Behind HAProxy (``send-proxy-v2``) or nginx's stream module
(``proxy_protocol on;``) every connection comes from the balancer's address;
the balancer then writes a PROXY header first, naming the client. With
``serve(proxy_protocol="v1v2", trusted_proxies=["10.0.0.0/8"])`` each
accepted connection starts with a :class:`ProxyHeaderReader`:

- a peer outside ``trusted_proxies`` is closed at once, before it sends a
  byte, and logged at INFO: a listener that expects PROXY headers is the
  balancer's, and a client that reaches it directly could otherwise spoof
  any address. (The other policy, "headers required from trusted peers and
  refused from others, who connect as themselves", would let direct clients
  in on a port that is meant to be behind the balancer, and a misconfigured
  balancer that forgets the header would silently count as one client.)
- the header must arrive within the open timeout; a malformed one (or none)
  closes the TCP connection without an answer (what follows may be TLS),
  logged at INFO with the reason.
- once the header is read, the TCP transport is handed to the protocol
  underneath (TLS, then the WebSocket connection) with
  ``transport.set_protocol``, and the bytes after the header are passed on:
  no layer stays in between, so later reads cost nothing more and the reader
  object is freed.

The header's source address becomes the connection's ``remote_address``
(for the handler, the log lines and the connection limiter); a LOCAL
command (the proxy's health check), ``PROXY UNKNOWN`` or a Unix-socket
address keep the proxy's own address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any, Union

from ..protocol.proxy_header import InvalidProxyHeader, ProxyHeader, ProxyHeaderParser

__all__ = [
    "PROXY_PROTOCOLS",
    "IPNetwork",
    "ProxyHeaderReader",
    "trusted_networks",
    "is_trusted",
    "proxy_versions",
]

logger = logging.getLogger("wsskit.server")

#: The values of ``serve(proxy_protocol=...)``: the PROXY header versions
#: accepted. ``"v2"`` fits HAProxy's ``send-proxy-v2``; ``"v1"`` nginx's
#: ``proxy_protocol on;``; ``"v1v2"`` both.
PROXY_PROTOCOLS = ("v1", "v2", "v1v2")

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def proxy_versions(proxy_protocol: str) -> tuple[int, ...]:
    """The header versions ``proxy_protocol`` (one of :data:`PROXY_PROTOCOLS`) stands for.

    Raises :class:`ValueError` for another value.
    """
    if proxy_protocol not in PROXY_PROTOCOLS:
        raise ValueError(f"proxy_protocol must be one of {PROXY_PROTOCOLS} or None, not {proxy_protocol!r}")
    return tuple(version for version in (1, 2) if f"v{version}" in proxy_protocol)


def trusted_networks(specs: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Parse ``trusted_proxies``: networks in CIDR form (``"10.0.0.0/8"``,
    ``"2001:db8::/32"``) or single addresses (``"192.0.2.10"``).

    Raises :class:`ValueError` for anything else, including a network with
    host bits set (``"10.0.0.1/8"``), which is most likely a typo.
    """
    if isinstance(specs, str):
        raise ValueError("trusted_proxies must be a list of networks, not one string")
    networks: list[IPNetwork] = []
    for spec in specs:
        if isinstance(spec, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(spec)
            continue
        try:
            networks.append(ipaddress.ip_network(str(spec).strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid trusted proxy network {spec!r}: {exc}") from None
    return tuple(networks)


def is_trusted(peername: Any, networks: tuple[IPNetwork, ...]) -> bool:
    """True when ``peername`` (a transport's ``peername``) is an IP address in ``networks``.

    An IPv4 peer seen through a dual-stack IPv6 socket (``::ffff:10.1.2.3``)
    is matched as IPv4. Other peers (Unix sockets) are never trusted.
    """
    if not isinstance(peername, tuple) or not peername:
        return False
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class ProxyHeaderReader(asyncio.Protocol):
    """The first protocol of an accepted TCP connection: reads the PROXY header, then steps aside.

    ``inner`` is the protocol the connection is for (the TLS layer or the
    WebSocket connection); it gets ``connection_made`` with the TCP
    transport once the header is read, then the bytes that followed it.
    ``on_header(header, peername)`` is called just before, so the
    connection learns its client's address. If the peer is not trusted,
    the header is invalid or missing, or ``timeout`` (seconds from the
    accept) passes first, the transport is closed and ``inner`` hears
    nothing at all (as when a TLS handshake fails).
    """

    __slots__ = ("_inner", "_networks", "_on_header", "_parser", "_timeout", "_timer", "_transport")

    def __init__(
        self,
        inner: asyncio.Protocol,
        on_header: Callable[[ProxyHeader, Any], None],
        *,
        networks: tuple[IPNetwork, ...],
        versions: tuple[int, ...],
        timeout: float | None,
    ) -> None:
        self._inner = inner
        self._on_header = on_header
        self._networks = networks
        self._parser = ProxyHeaderParser(versions=versions)
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """TCP is up: refuse an untrusted peer, else wait for the header."""
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if not is_trusted(peer, self._networks):
            logger.info(
                "%s: PROXY header from untrusted peer refused (not in trusted_proxies); closing", _peer(peer)
            )
            transport.abort()  # type: ignore[attr-defined]
            return
        if self._timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        """Bytes before the header's end: parse; once complete, hand the connection over."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            header = self._parser.receive_data(data)
        except InvalidProxyHeader as exc:
            self._refuse("invalid PROXY header: %s", exc)
            return
        if header is None:
            return
        self._cancel_timer()
        peer = transport.get_extra_info("peername")
        rest = self._parser.rest
        inner = self._inner
        self._on_header(header, peer)
        transport.set_protocol(inner)
        # Drop our references: nothing of the reader stays with the connection.
        self._transport = None
        self._parser = None  # type: ignore[assignment]
        inner.connection_made(transport)
        if rest and not transport.is_closing():
            inner.data_received(rest)

    def eof_received(self) -> bool:
        """The peer ended before the header was complete: close."""
        self._refuse("connection closed before the PROXY header was complete", level=logging.DEBUG)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended before the hand-over: nothing to tell anyone."""
        self._cancel_timer()
        self._transport = None

    def _timed_out(self) -> None:
        self._timer = None
        self._refuse("no complete PROXY header within %s s", self._timeout)

    def _refuse(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        # A peer's mistake, not ours: one line, no traceback, and only this
        # connection ends (abort: there is nothing to answer, and what
        # follows a bad header may be TLS).
        self._cancel_timer()
        transport = self._transport
        if transport is None:
            return
        self._transport = None
        logger.log(level, "%s: " + message + "; closing", _peer(transport.get_extra_info("peername")), *args)
        transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
