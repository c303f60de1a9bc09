"""A test-only SOCKS5 proxy (RFC 1928) with username/password authentication (RFC 1929)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from .base import Tunnel, TunnelingProxy

_VERSION = 5
_NO_AUTH, _USER_PASSWORD, _NO_ACCEPTABLE = 0x00, 0x02, 0xFF
_CONNECT = 1
_IPV4, _DOMAIN, _IPV6 = 1, 3, 4
_SUCCEEDED, _NOT_ALLOWED, _REFUSED, _COMMAND_NOT_SUPPORTED = 0, 2, 5, 7


class Socks5Proxy(TunnelingProxy):
    """Serves SOCKS5 CONNECT; with ``credentials=(user, password)`` only to those who give them.

    Name targets (``socks5h``) are resolved here; :attr:`Tunnel.address_type`
    records how the client named the target. A target that cannot be
    reached gets reply 5 (connection refused); ``allowed_ports`` as for the
    HTTP proxy, with reply 2 (not allowed by the ruleset).
    """

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, allowed_ports: set[int] | None = None
    ) -> None:
        super().__init__()
        self._credentials = credentials
        self._allowed_ports = allowed_ports
        self.auth_failures = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != _VERSION:
            return
        wanted = _NO_AUTH if self._credentials is None else _USER_PASSWORD
        if wanted not in methods:
            self.refused += 1
            writer.write(bytes([_VERSION, _NO_ACCEPTABLE]))
            await writer.drain()
            return
        writer.write(bytes([_VERSION, wanted]))
        if wanted == _USER_PASSWORD and not await self._authenticate(reader, writer):
            return

        version, command, _, address_type = await reader.readexactly(4)
        if address_type == _IPV4:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif address_type == _IPV6:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("idna")
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if command != _CONNECT:
            await self._reply(writer, _COMMAND_NOT_SUPPORTED)
            return
        if self._allowed_ports is not None and port not in self._allowed_ports:
            await self._reply(writer, _NOT_ALLOWED)
            return
        target = await self.open_target(host, port)
        if target is None:
            await self._reply(writer, _REFUSED)
            return
        tunnel = Tunnel(host, port, address_type=address_type)
        self.tunnels.append(tunnel)
        await self._reply(writer, _SUCCEEDED)
        await self.relay(tunnel, (reader, writer), target)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        # RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD; answer VER=1 and 0 for success.
        _, user_length = await reader.readexactly(2)
        user = (await reader.readexactly(user_length)).decode()
        (password_length,) = await reader.readexactly(1)
        password = (await reader.readexactly(password_length)).decode()
        if (user, password) != self._credentials:
            self.auth_failures += 1
            self.refused += 1
            writer.write(b"\x01\x01")
            await writer.drain()
            return False
        writer.write(b"\x01\x00")
        return True

    async def _reply(self, writer: asyncio.StreamWriter, code: int) -> None:
        if code != _SUCCEEDED:
            self.refused += 1
        # The bound address is of no use through a tunnel: 0.0.0.0:0.
        writer.write(bytes([_VERSION, code, 0, _IPV4, 0, 0, 0, 0, 0, 0]))
        await writer.drain()
