"""``make storm``: 5 000 wss:// echo connections to one node, all dropped at once; watch them return.

Plain echo clients (:func:`wsskit.asyncio.connect`), not channel clients: on
two cores one Python process can hold 5 000 TLS connections and redo their
handshakes in seconds, while 5 000 channel clients would also resubscribe,
which measures the backplane more than the node's admission. Each client
reconnects as a ``wsskit`` client does by default (:class:`ReconnectPolicy`
defaults: a first delay drawn from 0 to 5 s, then growing, ``Retry-After``
honoured on 429).

The node (``wsskit serve`` with its own certificate) admits ``--rate`` new
connections per second per address with bursts of twice that (the
``--connection-rate`` option); every client comes from 127.0.0.1, so that
limit is the one the storm meets. The drop is a SIGKILL of the node followed
by an immediate restart on the same port: every connection ends at once
(1006). A prober (:mod:`.probe`, its own process, from 127.0.0.2) asks
``/healthz`` every 100 ms throughout.

Report: connections admitted and refused with 429 per second, whether the
admitted rate stayed within the limit (``rate`` per second plus the
``2 x rate`` burst), the health probes' worst latency while the node was up,
and the time until every client was back. Exit 1 when the limit did not
hold, a probe took longer than ``--health-budget`` or the clients did not all
come back within ``--patience``; 2 when the node did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from deploy.lab.processes import Child, ServeNode, StartError, make_certificates, raise_fd_limit
from wsskit import tls
from wsskit.asyncio import connect
from wsskit.exceptions import InvalidStatus, WebSocketError
from wsskit.reconnect import ReconnectPolicy

__all__ = ["main", "Tally"]


@dataclass
class Tally:
    """What the clients saw, with unix timestamps."""

    admitted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # 429
    errors: Counter[str] = field(default_factory=Counter)
    connected: int = 0
    #: Per client: when it last opened a connection.
    opened_at: list[float] = field(default_factory=list)


async def _client(
    index: int, url: str, context: ssl.SSLContext, policy: ReconnectPolicy, tally: Tally, stop: asyncio.Event
) -> None:
    # The loop of a reconnecting client, written out so that each attempt can be counted.
    attempt = 0
    while not stop.is_set():
        try:
            ws = await connect(url, ssl=context, open_timeout=60, ping_interval=None)
        except InvalidStatus as exc:
            status = exc.response.status
            if status == 429:
                tally.refused.append(time.time())
            else:
                tally.errors[f"HTTP {status}"] += 1
            attempt += 1
            await asyncio.sleep(policy.delay(attempt, exc))
            continue
        except (OSError, TimeoutError, WebSocketError) as exc:
            tally.errors[type(exc).__name__] += 1
            attempt += 1
            await asyncio.sleep(policy.delay(attempt, exc))
            continue
        tally.admitted.append(time.time())
        tally.opened_at[index] = time.time()
        tally.connected += 1
        attempt = 0
        try:
            await ws.wait_closed()
        finally:
            tally.connected -= 1
        if stop.is_set():
            return
        attempt = 1
        await asyncio.sleep(policy.delay(attempt, None))


def _per_second(stamps: list[float], origin: float) -> list[int]:
    counts = Counter(int(t - origin) for t in stamps if t >= origin)
    return [counts.get(second, 0) for second in range(max(counts, default=-1) + 1)]


def _listen_overflows() -> int:
    # TcpExt ListenOverflows (Linux): handshakes dropped because an accept queue was full.
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


async def _wait_connected(tally: Tally, goal: int, patience: float, since: float = 0.0) -> float | None:
    # Every client connected, each on a connection opened after ``since``.
    started = time.monotonic()
    while tally.connected < goal or min(tally.opened_at) <= since:
        if time.monotonic() - started > patience:
            return None
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _storm(args: argparse.Namespace, root: Path) -> int:
    certs = make_certificates(root / "certs")
    node = ServeNode(
        "node", root / "home", certs,
        "--connection-rate", str(args.rate),
        "--max-connections-per-ip", str(args.connections * 2),
        "--max-connections", str(args.connections * 2),
    )  # fmt: skip
    try:
        node.start()
    except (StartError, TimeoutError) as exc:
        print(f"storm: the node did not start: {exc}", file=sys.stderr)
        return 2
    probe = Child(
        [sys.executable, "-m", "deploy.storm.probe", str(node.port), str(certs.ca_cert)],
        cwd=Path(__file__).resolve().parents[2],
    )
    probe.spawn()
    context = tls.client_context(cafile=certs.ca_cert)
    policy = ReconnectPolicy()
    tally = Tally(opened_at=[0.0] * args.connections)
    stop = asyncio.Event()
    url = f"wss://127.0.0.1:{node.port}/echo"
    clients = [
        asyncio.create_task(_client(i, url, context, policy, tally, stop)) for i in range(args.connections)
    ]
    try:
        print(f"storm: opening {args.connections} connections (rate limit {args.rate}/s) ...", flush=True)
        ramp = await _wait_connected(tally, args.connections, args.patience)
        if ramp is None:
            print(f"storm: only {tally.connected} of {args.connections} connected", file=sys.stderr)
            return 1
        print(f"storm: all connected in {ramp:.1f} s; dropping them all (SIGKILL, restart)", flush=True)
        before = len(tally.admitted), len(tally.refused)
        overflows_before = _listen_overflows()
        dropped_at = time.time()
        node.stop(signal.SIGKILL)
        await asyncio.to_thread(node.start)
        up_at = time.time()
        back = await _wait_connected(tally, args.connections, args.patience, since=dropped_at)
        done_at = time.time()
    finally:
        stop.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        probe.stop(signal.SIGTERM, 10)
        node.stop(signal.SIGKILL, 10)

    admitted = _per_second(tally.admitted[before[0] :], dropped_at)
    refused = _per_second(tally.refused[before[1] :], dropped_at)
    probes = [json.loads(line) for line in probe.lines if line.startswith("{")]
    during = [p for p in probes if up_at <= p["t"] <= done_at]
    latencies = [p["latency"] for p in during if p["latency"] is not None]
    worst = max(latencies, default=None)
    worst_connect = max((p["connect"] for p in during), default=None)
    ordered = sorted(latencies)
    median = ordered[len(ordered) // 2] if ordered else None
    statuses = Counter(p["status"] for p in during)
    # The token bucket: at most the burst (2 x rate) plus the rate in any second.
    ceiling = 3 * args.rate
    limit_held = all(n <= ceiling for n in admitted)
    print()
    print(f"{args.connections} wss:// echo connections to one node, connection rate {args.rate}/s per IP")
    print()
    print("| second after the drop | admitted | refused (429) |")
    print("|---|---|---|")
    for second in range(max(len(admitted), len(refused))):
        a = admitted[second] if second < len(admitted) else 0
        r = refused[second] if second < len(refused) else 0
        print(f"| {second} | {a} | {r} |")
    print()
    print(f"- node back (serving) {up_at - dropped_at:.1f} s after the drop")
    took = "no" if back is None else f"{done_at - dropped_at:.1f} s after the drop"
    print(f"- all {args.connections} clients back: {took}")
    held = "yes" if limit_held else "NO"
    most = max(admitted, default=0)
    print(f"- admitted at most {most}/s (ceiling {ceiling}: rate + burst): limit held: {held}")
    print(f"- 429 answers in all: {sum(refused)}; other failed attempts: {dict(tally.errors) or 'none'}")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    print(
        f"- /healthz probes while the node was up: {len(during)}, answers {dict(statuses)}, "
        f"median latency {ms(median)}, worst {ms(worst)} (budget {ms(args.health_budget)}), "
        f"of which connecting at most {ms(worst_connect)}"
    )
    overflows = _listen_overflows() - overflows_before
    print(f"- the kernel's listen-queue overflows meanwhile (all of this machine): {overflows}")
    # Every probe got an HTTP answer (not a timeout or a reset), each within the budget.
    answered = all(str(status).isdigit() for status in statuses)
    healthy = worst is not None and worst <= args.health_budget and answered
    return 0 if back is not None and limit_held and healthy else 1


def main(argv: list[str] | None = None) -> int:
    """Run the storm and print its report; see the module's docstring for the exit status."""
    parser = argparse.ArgumentParser(prog="make storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=500, help="the node's --connection-rate (500)")
    parser.add_argument("--patience", type=float, default=180.0, help="seconds to wait for the clients")
    parser.add_argument(
        "--health-budget", type=float, default=1.0, help="worst /healthz latency allowed (1 s)"
    )
    args = parser.parse_args(argv)
    limit = raise_fd_limit()
    if limit < args.connections * 2 + 100:
        needed = args.connections * 2 + 100
        print(f"storm: {needed} open files needed, {limit} allowed (ulimit -Hn)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="wsskit-storm-"))
    try:
        return asyncio.run(_storm(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
