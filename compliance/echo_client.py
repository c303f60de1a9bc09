"""Echo client for the Autobahn Testsuite's fuzzingserver (client role).

Asks the fuzzing server how many cases it runs (``/getCaseCount``), then for each
case N connects to ``/runCase?case=N&agent=AGENT`` and sends every message back
until the server closes, and finally asks for the reports (``/updateReports``).

    python compliance/echo_client.py [--impl wsskit|websockets] [--agent NAME]
                                     [--url ws://127.0.0.1:9001] [--cafile ca.pem]
                                     [--reports-only]

Prints one ``CASE <n>/<count> ...`` line per case on stdout. Exits 1 when the
server cannot be reached or the reports could not be requested, 0 otherwise:
a failed case is the suite's verdict to report, not this script's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Run as a script, so this directory is on sys.path and its sibling imports directly.
from peers import IMPLS, Peer, load


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLS, default="wsskit", help="implementation (default: wsskit)")
    parser.add_argument("--agent", help="agent name in the reports (default: the implementation's name)")
    parser.add_argument("--url", default="ws://127.0.0.1:9001", help="fuzzing server (default: %(default)s)")
    parser.add_argument(
        "--cafile", type=Path, help="PEM CA bundle that signs the wss:// server's certificate"
    )
    parser.add_argument(
        "--reports-only",
        action="store_true",
        help="only ask the server to write its reports (after an interrupted run)",
    )
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=900.0,
        help="give up on one case after this many seconds (default: %(default)s; "
        "the slowest 12.x/13.x cases allow themselves 480)",
    )
    return parser.parse_args(argv)


class EchoClient:
    """Drives one implementation through the fuzzing server's HTTP-ish commands."""

    def __init__(self, peer: Peer, base_url: str, agent: str, cafile: Path | None) -> None:
        self.peer = peer
        self.base_url = base_url.rstrip("/")
        self.agent = agent
        self.options = dict(peer.client_options)
        if base_url.startswith("wss:"):
            self.options["ssl"] = ssl.create_default_context(cafile=cafile)

    async def _open(self, path: str) -> Any:
        return await self.peer.connect(self.base_url + path, **self.options)

    async def _drain(self, ws: Any, echo: bool) -> int:
        """Read until the connection closes, echoing if asked; return the message count."""
        count = 0
        try:
            async for message in ws:
                count += 1
                if echo:
                    await ws.send(message)
        except self.peer.closed_errors:
            pass
        return count

    async def case_count(self) -> int:
        ws = await self._open("/getCaseCount")
        try:
            return int(json.loads(await ws.recv()))
        finally:
            await ws.close()

    async def run_case(self, number: int) -> int:
        ws = await self._open(f"/runCase?case={number}&agent={quote(self.agent)}")
        try:
            return await self._drain(ws, echo=True)
        finally:
            await ws.close()

    async def update_reports(self) -> None:
        ws = await self._open(f"/updateReports?agent={quote(self.agent)}")
        try:
            # The server writes the reports, then closes: wait for that close.
            await self._drain(ws, echo=False)
        finally:
            await ws.close()


async def _main(args: argparse.Namespace) -> int:
    peer = load(args.impl)
    client = EchoClient(peer, args.url, args.agent or peer.name, args.cafile)
    if args.reports_only:
        return await _update_reports(client)
    try:
        count = await client.case_count()
    except Exception as exc:  # any failure to reach the server ends the run
        print(f"ERROR cannot get the case count from {args.url}: {exc!r}", file=sys.stderr)
        return 1
    print(f"COUNT {count}", flush=True)

    for number in range(1, count + 1):
        started = time.monotonic()
        try:
            echoed = await asyncio.wait_for(client.run_case(number), args.case_timeout)
        except asyncio.TimeoutError:
            outcome = f"timeout after {args.case_timeout:.0f}s"
        except Exception as exc:  # a case may break the client; the suite judges it
            outcome = f"error {exc!r}"
        else:
            outcome = f"echoed {echoed}"
        print(f"CASE {number}/{count} {outcome} {time.monotonic() - started:.2f}s", flush=True)
    return await _update_reports(client)


async def _update_reports(client: EchoClient) -> int:
    try:
        await client.update_reports()
    except Exception as exc:
        print(f"ERROR cannot update the reports: {exc!r}", file=sys.stderr)
        return 1
    print("REPORTS updated", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
