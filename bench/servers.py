"""Echo servers for the benchmark: one process, one implementation.

    python bench/servers.py --impl wsskit --transport wss --loop uvloop \
        --cert server.pem --key server.key [--compression deflate]

Every server is set up the same way: binary and text messages echoed back
as they came, keepalive pings off, the same 2 MiB message limit, a listen
backlog of 1024, compression off unless ``--compression deflate`` (then each
library's own permessage-deflate defaults), and for ``wss`` the one TLS
context made by :func:`wsskit.tls.server_context` from the same certificate
(so the cipher suite is the same for all). Each server keeps the set of its
open connections, for counting and broadcasting.

Once it listens the process prints ``PORT <number>`` on a line of its own.
Then it reads commands on stdin, one per line, and answers on stdout:

- ``COUNT``: ``COUNT <open connections>``;
- ``BROADCAST <size>``: sends one binary message of ``size`` bytes to every
  open connection with the library's broadcast (wsskit.asyncio.broadcast,
  websockets' broadcast(), a send loop for picows; see bench/README.md) and
  answers ``SENT <t0> <t1> <connections> <how>``:
  the wall clock in ns (CLOCK_REALTIME) just before the call and once it
  returned.

It exits at the end of stdin (when bench/run.py goes away), on SIGTERM, or
after ``--lifetime`` seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from common import HOST, MAX_SIZE, raise_nofile, wall_ns

IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp", "picows")
DEFLATE_IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp")  # picows has no permessage-deflate
BROADCAST_IMPLEMENTATIONS = ("wsskit", "websockets", "picows")
BACKLOG = 1024

Broadcaster = Callable[[bytes], "Awaitable[None] | None"]


class Server:
    """What a started server leaves behind: its port, its connections, how it broadcasts."""

    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.port = 0
        self.broadcast: Broadcaster | None = None
        self.broadcast_how = "none"
        self.keep: list[object] = []  # servers stay referenced for the life of the process


Starter = Callable[[Server, "ssl.SSLContext | None", bool, int], Awaitable[None]]


# -- wsskit ------------------------------------------------------------------------


async def _start_wsskit(server: Server, context: ssl.SSLContext | None, deflate: bool, max_size: int) -> None:
    from wsskit.asyncio import broadcast, serve

    connections = server.connections

    async def echo(ws: Any) -> None:
        connections.add(ws)
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            connections.discard(ws)

    listening = await serve(
        echo,
        HOST,
        0,
        ssl=context,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=max_size,
        backlog=BACKLOG,
    )
    server.keep.append(listening)
    server.port = listening.sockets[0].getsockname()[1]
    # Frames the message once for every plain connection.
    server.broadcast = lambda message: broadcast(connections, message)
    server.broadcast_how = "wsskit.asyncio.broadcast"


# -- websockets --------------------------------------------------------------------


async def _start_websockets(
    server: Server, context: ssl.SSLContext | None, deflate: bool, max_size: int
) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections = server.connections

    async def echo(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            connections.discard(ws)

    listening = await serve(
        echo,
        HOST,
        0,
        ssl=context,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=max_size,
        backlog=BACKLOG,
    )
    server.keep.append(listening)
    server.port = next(iter(listening.sockets)).getsockname()[1]
    server.broadcast = lambda message: broadcast(connections, message)
    server.broadcast_how = "websockets.asyncio.server.broadcast"


# -- aiohttp -----------------------------------------------------------------------


async def _start_aiohttp(
    server: Server, context: ssl.SSLContext | None, deflate: bool, max_size: int
) -> None:
    from aiohttp import WSMsgType, web

    connections = server.connections

    async def echo(request: web.Request) -> web.WebSocketResponse:
        # compress=True is aiohttp's default (15-bit window); False turns it off.
        ws = web.WebSocketResponse(compress=deflate, heartbeat=None, max_msg_size=max_size)
        await ws.prepare(request)
        connections.add(ws)
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
                elif message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
        finally:
            connections.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=context, backlog=BACKLOG)
    await site.start()
    server.keep.append(runner)
    server.port = runner.addresses[0][1]


# -- picows ------------------------------------------------------------------------


async def _start_picows(server: Server, context: ssl.SSLContext | None, deflate: bool, max_size: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    if deflate:
        raise SystemExit("picows has no permessage-deflate")
    connections = server.connections

    class Echo(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_connected(self, transport: WSTransport) -> None:
            connections.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            connections.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type is not WSMsgType.PING and frame.msg_type is not WSMsgType.PONG:
                # picows hands over frames, not messages: echoing each frame as
                # it came echoes every message (the benchmark clients never
                # fragment, so this is one frame per message).
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    def listener(request: WSUpgradeRequest) -> WSListener:
        return Echo()

    listening = await ws_create_server(
        listener,
        HOST,
        0,
        ssl=context,
        enable_auto_ping=False,
        max_frame_size=max_size,
        backlog=BACKLOG,
    )
    server.keep.append(listening)
    server.port = listening.sockets[0].getsockname()[1]

    def broadcast(message: bytes) -> None:
        # picows has no broadcast helper: a loop of sends (each frames in C).
        for transport in list(connections):
            transport.send(WSMsgType.BINARY, message)

    server.broadcast = broadcast
    server.broadcast_how = "picows-send-loop"


STARTERS: dict[str, Starter] = {
    "wsskit": _start_wsskit,
    "websockets": _start_websockets,
    "aiohttp": _start_aiohttp,
    "picows": _start_picows,
}


# -- commands on stdin ---------------------------------------------------------------


class _Commands:
    """Reads command lines from stdin on the event loop and answers them."""

    def __init__(self, server: Server, done: asyncio.Future[None]) -> None:
        self.server = server
        self.done = done
        self.buffer = b""
        self.busy: asyncio.Task[None] | None = None
        self.pending: list[str] = []

    def on_readable(self) -> None:
        try:
            chunk = os.read(0, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        self.pending += [line.decode().strip() for line in lines if line.strip()]
        self._next()

    def _next(self) -> None:
        if self.busy is None and self.pending:
            self.busy = asyncio.ensure_future(self._run(self.pending.pop(0)))

    async def _run(self, line: str) -> None:
        try:
            await self._answer(line)
        finally:
            self.busy = None
            self._next()

    async def _answer(self, line: str) -> None:
        words = line.split()
        if words[0] == "COUNT":
            _say(f"COUNT {len(self.server.connections)}")
        elif words[0] == "BROADCAST" and self.server.broadcast is not None:
            message = os.urandom(int(words[1]) if len(words) > 1 else 1024)
            count = len(self.server.connections)
            t0 = wall_ns()
            result = self.server.broadcast(message)
            if inspect.isawaitable(result):
                await result
            t1 = wall_ns()
            _say(f"SENT {t0} {t1} {count} {self.server.broadcast_how}")
        else:
            _say(f"ERROR {line}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    from wsskit.tls import server_context

    return server_context(cert, key)


async def _main(args: argparse.Namespace, context: ssl.SSLContext | None) -> None:
    server = Server()
    await STARTERS[args.impl](server, context, args.compression == "deflate", args.max_size)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    commands = _Commands(server, done)
    os.set_blocking(0, False)
    loop.add_reader(0, commands.on_readable)

    def end() -> None:
        if not done.done():
            done.set_result(None)

    loop.call_later(args.lifetime, end)
    _say(f"PORT {server.port}")
    await done
    loop.remove_reader(0)


def run(args: argparse.Namespace, context: ssl.SSLContext | None) -> None:
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_main(args, context))
    else:
        asyncio.run(_main(args, context))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, required=True)
    parser.add_argument("--transport", choices=("ws", "wss"), default="ws")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--compression", choices=("off", "deflate"), default="off")
    parser.add_argument("--cert", help="server certificate (PEM), needed for wss")
    parser.add_argument("--key", help="server private key (PEM), needed for wss")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE)
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many seconds")
    args = parser.parse_args(argv)
    if args.transport == "wss" and not (args.cert and args.key):
        parser.error("wss needs --cert and --key")
    raise_nofile()
    context = tls_context(args.cert, args.key) if args.transport == "wss" else None
    with contextlib.suppress(KeyboardInterrupt):
        run(args, context)


if __name__ == "__main__":
    main()
