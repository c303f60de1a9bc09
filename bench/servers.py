"""Echo servers for the benchmark: one process, one implementation.

    python bench/servers.py --impl wsskit --transport wss --loop uvloop \
        --cert server.pem --key server.key

Every server is set up the same way: binary and text messages echoed back
as they came, compression off, keepalive pings off, a 2 MiB message limit,
and for ``wss`` the one TLS context made by :func:`wsskit.tls.server_context`
from the same certificate (so the cipher suite is the same for all). Once it
listens the process prints ``PORT <number>`` on a line of its own and serves
until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp", "picows")
HOST = "127.0.0.1"
MAX_SIZE = 2**21

Starter = Callable[[ssl.SSLContext | None, int], Awaitable[int]]


async def _start_wsskit(context: ssl.SSLContext | None, max_size: int) -> int:
    try:
        from wsskit import serve  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        from wsskit.asyncio import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, HOST, 0, ssl=context, compression=None, ping_interval=None, max_size=max_size)
    _keep.append(server)
    port: int = server.sockets[0].getsockname()[1]
    return port


async def _start_websockets(context: ssl.SSLContext | None, max_size: int) -> int:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, HOST, 0, ssl=context, compression=None, ping_interval=None, max_size=max_size)
    _keep.append(server)
    port: int = next(iter(server.sockets)).getsockname()[1]
    return port


async def _start_aiohttp(context: ssl.SSLContext | None, max_size: int) -> int:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=None, max_msg_size=max_size)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=context)
    await site.start()
    _keep.append(runner)
    port: int = runner.addresses[0][1]
    return port


async def _start_picows(context: ssl.SSLContext | None, max_size: int) -> int:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

    class Echo(WSListener):  # type: ignore[misc,unused-ignore]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type is not WSMsgType.PING and frame.msg_type is not WSMsgType.PONG:
                # picows hands over frames, not messages: echoing each frame as
                # it came echoes every message (the benchmark client never
                # fragments, so this is one frame per message).
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    def listener(request: WSUpgradeRequest) -> WSListener:
        return Echo()

    server = await ws_create_server(
        listener,
        HOST,
        0,
        ssl=context,
        enable_auto_ping=False,
        max_frame_size=max_size,
    )
    _keep.append(server)
    port: int = server.sockets[0].getsockname()[1]
    return port


STARTERS: dict[str, Starter] = {
    "wsskit": _start_wsskit,
    "websockets": _start_websockets,
    "aiohttp": _start_aiohttp,
    "picows": _start_picows,
}

# Servers stay referenced for the life of the process.
_keep: list[object] = []


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    from wsskit.tls import server_context

    return server_context(cert, key)


async def _main(impl: str, context: ssl.SSLContext | None, max_size: int) -> None:
    port = await STARTERS[impl](context, max_size)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def run(impl: str, loop: str, context: ssl.SSLContext | None, max_size: int) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(_main(impl, context, max_size))
    else:
        asyncio.run(_main(impl, context, max_size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, required=True)
    parser.add_argument("--transport", choices=("ws", "wss"), default="ws")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--cert", help="server certificate (PEM), needed for wss")
    parser.add_argument("--key", help="server private key (PEM), needed for wss")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE)
    args = parser.parse_args(argv)
    if args.transport == "wss" and not (args.cert and args.key):
        parser.error("wss needs --cert and --key")
    context = tls_context(args.cert, args.key) if args.transport == "wss" else None
    with contextlib.suppress(KeyboardInterrupt):
        run(args.impl, args.loop, context, args.max_size)


if __name__ == "__main__":
    main()
