"""Echo server for the Autobahn Testsuite's fuzzingclient (server role).

Every message a client sends comes straight back, text as text, binary as binary.

    python compliance/echo_server.py [--impl wsskit|websockets] [--port 9001]
                                     [--certfile cert.pem --keyfile key.pem]

Prints ``LISTENING <host> <port>`` on stdout once it accepts connections, and stops
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

# Run as a script, so this directory is on sys.path and its sibling imports directly.
from peers import IMPLS, Peer, load


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLS, default="wsskit", help="implementation (default: wsskit)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9001, help="port to listen on (default: 9001)")
    parser.add_argument("--certfile", type=Path, help="PEM certificate chain: serve wss://")
    parser.add_argument("--keyfile", type=Path, help="PEM private key for --certfile")
    args = parser.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    return args


def _server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


async def _serve(peer: Peer, args: argparse.Namespace) -> None:
    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except peer.closed_errors:
            pass  # the suite fails connections on purpose; that is not a server error

    options = dict(peer.server_options)
    tls = _server_tls(args)
    if tls is not None:
        options["ssl"] = tls

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async with peer.serve(echo, args.host, args.port, **options):
        scheme = "wss" if tls is not None else "ws"
        print(f"LISTENING {args.host} {args.port} {scheme} {peer.name}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    peer = load(args.impl)
    asyncio.run(_serve(peer, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
