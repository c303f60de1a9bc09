"""What the test proxies share: the listening server, the relay and the records."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

_P = TypeVar("_P", bound="TunnelingProxy")


@dataclass
class Tunnel:
    """One tunnel a proxy opened: the target it was asked for and the first bytes relayed."""

    host: str
    port: int
    #: The first chunk the client sent through the tunnel (a TLS record, or an HTTP request).
    first_bytes: bytes = b""
    #: SOCKS only: the address type of the request (1 IPv4, 3 domain name, 4 IPv6).
    address_type: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class TunnelingProxy:
    """A proxy on 127.0.0.1 that serves each client with :meth:`handle`.

    ``async with proxy:`` starts it on a free port and, on exit, closes the
    listener and aborts every connection. :attr:`tunnels` lists the tunnels
    opened; :attr:`refused` counts the requests turned down.
    """

    def __init__(self, *, ssl: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tunnels: list[Tunnel] = []
        self.refused = 0
        self.connections = 0
        #: The port it listens on, once started.
        self.port = 0

    async def __aenter__(self: _P) -> _P:
        self._server = await asyncio.start_server(self._run, "127.0.0.1", 0, ssl=self._ssl)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        # Aborted transports end every handler; wait for them rather than
        # cancel them (asyncio's stream callback would log the cancellation).
        pending = {task for task in self._tasks if not task.done()}
        if pending:
            await asyncio.wait(pending, timeout=10)
        await self._server.wait_closed()

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError):
            await self.handle(reader, writer)
        writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def open_target(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Connect to the target, or return None when it cannot be reached.

        Any loopback address means 127.0.0.1, where the tests' servers listen:
        a client that resolved ``localhost`` to ``::1`` still gets through.
        """
        with suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                host = "127.0.0.1"
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return None
        self._writers.append(writer)
        return reader, writer

    async def relay(
        self,
        tunnel: Tunnel,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        """Copy bytes both ways until either side ends; note the client's first chunk."""

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool) -> None:
            with suppress(ConnectionError, ssl.SSLError):
                while data := await source.read(65536):
                    if record and not tunnel.first_bytes:
                        tunnel.first_bytes = data
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        tasks = [
            asyncio.ensure_future(pipe(client[0], target[1], True)),
            asyncio.ensure_future(pipe(target[0], client[1], False)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
