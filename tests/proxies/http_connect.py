"""A test-only HTTP/1.1 CONNECT proxy (RFC 9110 §9.3.6), over plain TCP or TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl

from .base import Tunnel, TunnelingProxy


class HttpConnectProxy(TunnelingProxy):
    """Answers ``CONNECT host:port`` with 200 and relays; anything else with an error.

    - ``credentials=(user, password)``: a request without the matching
      ``Proxy-Authorization: Basic`` gets 407 with ``Proxy-Authenticate``.
    - ``allowed_ports``: a CONNECT to another port gets 403 (as Squid does
      for ports outside its SSL_ports).
    - ``ssl``: a server context makes it an ``https://`` proxy.
    - A target that cannot be reached gets 502.
    - ``refuse_with=(status, reason, extra header lines)`` answers every
      request so (a 503 with ``Retry-After``).

    :attr:`requests` keeps the header fields of every request, lower-cased names.
    """

    def __init__(
        self,
        *,
        ssl: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        allowed_ports: set[int] | None = None,
        refuse_with: tuple[int, str, str] | None = None,
    ) -> None:
        super().__init__(ssl=ssl)
        self._refuse_with = refuse_with
        self._credentials = credentials
        self._allowed_ports = allowed_ports
        self.requests: list[dict[str, str]] = []
        self.tls_clients = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if writer.get_extra_info("ssl_object") is not None:
            self.tls_clients += 1
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head[:-4].split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.requests.append(headers)
        method, target, version = request_line.split(" ")
        if method != "CONNECT" or version != "HTTP/1.1":
            await self._answer(writer, 405, "Method Not Allowed")
            return
        if self._refuse_with is not None:
            await self._answer(writer, *self._refuse_with)
            return
        if self._credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self._credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                await self._answer(
                    writer, 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="test"\r\n'
                )
                return
        host, _, port_text = target.rpartition(":")
        host, port = host.strip("[]"), int(port_text)
        if self._allowed_ports is not None and port not in self._allowed_ports:
            await self._answer(writer, 403, "Forbidden")
            return
        target_streams = await self.open_target(host, port)
        if target_streams is None:
            await self._answer(writer, 502, "Bad Gateway")
            return
        tunnel = Tunnel(host, port, headers=headers)
        self.tunnels.append(tunnel)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await self.relay(tunnel, (reader, writer), target_streams)

    async def _answer(self, writer: asyncio.StreamWriter, status: int, reason: str, extra: str = "") -> None:
        self.refused += 1
        body = f"{status} {reason}\n".encode()
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
