"""``make failover``: kill parts of a real deployment under load and count every message.

The lab: a private Redis; three ``wsskit serve`` nodes sharing it; HAProxy in
front (``deploy/haproxy/tls-terminate.cfg``: TLS at HAProxy, wss:// to the
nodes, health checks on ``/readyz``); channel clients in child processes
(:mod:`.traffic`), all connected through HAProxy: ``--clients`` subscribers
spread over ``--channels`` channels, and a publisher sending ``--rate``
messages per second in all, each carrying its channel's sequence number.

Steps: (a) SIGKILL one node, then start it again; (b) a rolling restart,
SIGTERM to each node in turn, started again before the next; (c) restart
Redis (every key is lost). Each step ends once every client is back and
every acknowledged publication had time to arrive; the subscribers then count
what they received against what was acknowledged (:mod:`.tally`).

Exit status: 0 when (a) and (b) lost, duplicated and reordered nothing and
(c) left no silent gap (a client told ``recovered: false`` is not a silent
gap); 1 otherwise; 2 when the lab could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from deploy.lab.processes import (
    Child,
    HAProxy,
    RedisProcess,
    ServeNode,
    StartError,
    free_port,
    haproxy_bundle,
    make_certificates,
    raise_fd_limit,
)
from deploy.lab.recipes import Node, render_file, without_http_checks, without_proxy_protocol

from .report import StepResult, markdown_table
from .tally import Tally

__all__ = ["main", "Lab"]

#: The namespace of the test channels: history long enough to cover any
#: reconnect here (clients resume from it), no presence (not measured here).
NODE_CONFIG = """\
[[namespaces]]
name = "load"
history_size = 5000
history_ttl = 600
subscribe = "any"
publish = "any"
"""

#: How long one wait may take before the run is declared stuck.
PATIENCE = 120.0


def _serve_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "wsskit", "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout


class Lab:
    """The running deployment and its clients; :meth:`close` stops everything."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.children: list[Child] = []
        self.certs = make_certificates(root / "certs")
        self.redis = RedisProcess(root / "redis")
        self.channels = [f"load:room-{i}" for i in range(args.channels)]
        config = root / "wsskit.toml"
        config.write_text(NODE_CONFIG, encoding="utf-8")
        options = ["--config", str(config)]
        # Every client here comes from 127.0.0.1: a per-IP connection rate
        # would throttle the whole fleet's reconnects (in production the PROXY
        # header gives each client its own address; see docs/deployment.md).
        options += ["--connection-rate", "0"]
        help_text = _serve_help()
        #: Whether the nodes read HAProxy's PROXY protocol header (send-proxy-v2 in the recipe).
        self.proxy_protocol = "--proxy-protocol" in help_text
        if self.proxy_protocol:
            options += ["--proxy-protocol", "--trusted-proxy", "127.0.0.1/32"]
        #: Whether the nodes have /readyz and the drain options (the health work).
        self.readiness = "--drain-delay" in help_text
        if self.readiness:
            # Longer than HAProxy's detection (inter 1s x fall 2), as docs/deployment.md advises.
            options += ["--drain-delay", "3", "--drain-window", "2", "--drain-timeout", "20"]
        self.nodes = [
            ServeNode(f"node{i}", root / f"home{i}", self.certs, *options, backplane=self.redis.url)
            for i in (1, 2, 3)
        ]
        self.port = free_port()
        stats = root / "haproxy.sock"
        values = {
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "CERT_BUNDLE": str(haproxy_bundle(self.certs, root / "bundle.pem")),
            "NODE_CA": str(self.certs.ca_cert),
            "NODE_TLS_NAME": "localhost",
            "STATS_SOCKET": str(stats),
            "MAXCONN": "4000",
        }
        recipe = render_file(
            "haproxy/tls-terminate.cfg",
            values,
            [Node(node.name, node.addr) for node in self.nodes],
            root / "haproxy.cfg",
        )
        if not self.readiness:
            without_http_checks(recipe)
        if not self.proxy_protocol:
            without_proxy_protocol(recipe)
        self.haproxy = HAProxy(recipe, self.port, stats)
        self.subscribers: list[Child] = []
        self.publisher: Child | None = None

    # -- setting up ------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis, the nodes, HAProxy, then the clients; raises :class:`StartError`."""
        self.redis.start()
        self.children.append(self.redis)
        for node in self.nodes:
            node.start()
            self.children.append(node)
        self.haproxy.start()
        self.children.append(self.haproxy)
        self.wait_up()
        url = f"wss://127.0.0.1:{self.port}/channels"
        per_process = -(-self.args.clients // self.args.processes)
        first = 0
        while first < self.args.clients:
            count = min(per_process, self.args.clients - first)
            self.subscribers.append(
                self._traffic("subscribers", url, "--clients", str(count), "--first", str(first))
            )
            first += count
        self.publisher = self._traffic("publisher", url, "--rate", str(self.args.rate))

    def _traffic(self, role: str, url: str, *options: str) -> Child:
        argv = [sys.executable, "-m", "deploy.failover.traffic", role, url, str(self.certs.ca_cert)]
        argv += ["--channels", ",".join(self.channels), *options]
        child = Child(argv, stdin=True, cwd=Path(__file__).resolve().parents[2])
        child.spawn()
        self.children.append(child)
        child.wait_for_line(">> ready ", PATIENCE)
        return child

    def close(self) -> None:
        """Stop every process, clients first."""
        for child in reversed(self.children):
            if child.stdin and child.running():
                with contextlib.suppress(OSError, TimeoutError, StartError):
                    child.ask("quit", 30)
            child.stop(signal.SIGKILL, 10)

    # -- waiting ---------------------------------------------------------------------

    def wait_up(self) -> None:
        """Until HAProxy sees every node UP."""
        self.haproxy.wait_states({node.name: "UP" for node in self.nodes}, PATIENCE)

    def wait_live(self) -> None:
        """Until every client holds a live subscription (or connection, for the publisher).

        Raises :class:`RuntimeError` when a client ended for good, :class:`TimeoutError`.
        """
        deadline = time.monotonic() + PATIENCE
        while True:
            states = [json.loads(child.ask("status")) for child in self._clients()]
            ended = sum(s["ended"] for s in states)
            if ended:
                raise RuntimeError(f"{ended} client(s) stopped reconnecting: {states}")
            if all(s["live"] == s["total"] for s in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"clients not back after {PATIENCE} s: {states}")
            time.sleep(0.2)

    def _clients(self) -> list[Child]:
        assert self.publisher is not None
        return [*self.subscribers, self.publisher]

    # -- measuring -------------------------------------------------------------------

    def cut(self) -> tuple[dict[str, list[int]], dict[str, int]]:
        """The publisher's acknowledged range per channel since the last cut, and its failed attempts."""
        assert self.publisher is not None
        answer = json.loads(self.publisher.ask("cut"))
        return answer["ranges"], answer["failures"]

    def step(self, name: str, action: Callable[[], None], *, loss_may_be_told: bool = False) -> StepResult:
        """Run ``action``, wait for the clients and the deliveries, and count."""
        print(f"failover: {name} ...", flush=True)
        since, started = time.time(), time.monotonic()
        action()
        self.wait_live()
        time.sleep(self.args.settle)
        ranges, failures = self.cut()
        goals = {channel: hi for channel, (_lo, hi) in ranges.items()}
        for child in self.subscribers:
            child.ask(f"wait {json.dumps(goals)} 30", PATIENCE)
        total = Tally()
        request = json.dumps({"ranges": ranges, "since": since})
        for child in self.subscribers:
            total = total + Tally.from_dict(json.loads(child.ask(f"report {request}", PATIENCE)))
        published = sum(max(0, hi - lo + 1) for lo, hi in ranges.values())
        return StepResult(name, loss_may_be_told, published, total, failures, time.monotonic() - started)

    # -- the steps -------------------------------------------------------------------

    def kill_one(self) -> None:
        """(a) SIGKILL the first node; once the clients moved, start it again."""
        node = self.nodes[0]
        node.stop(signal.SIGKILL)
        self.wait_live()
        node.start()
        self.wait_up()

    def rolling_restart(self) -> None:
        """(b) SIGTERM each node; wait for its exit, start it again, wait until HAProxy sees it UP."""
        for node in self.nodes:
            node.stop(signal.SIGTERM, timeout=60)
            self.wait_live()
            node.start()
            self.wait_up()

    def restart_redis(self) -> None:
        """(c) Restart Redis: every channel's history and epoch are gone."""
        self.redis.restart()
        time.sleep(1.0)
        self.wait_up()


def main(argv: list[str] | None = None) -> int:
    """Run the scenario, print the table; see the module's docstring for the exit status."""
    parser = argparse.ArgumentParser(prog="make failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="subscribers (default 200)")
    parser.add_argument("--channels", type=int, default=10, help="channels (default 10)")
    parser.add_argument("--rate", type=float, default=500.0, help="publications per second in all (500)")
    parser.add_argument("--processes", type=int, default=2, help="processes holding the subscribers (2)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of steady traffic after each step")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the lab folder (logs, configs)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    root = Path(tempfile.mkdtemp(prefix="wsskit-failover-"))
    lab = Lab(root, args)
    results: list[StepResult] = []
    try:
        try:
            lab.start()
        except (StartError, TimeoutError, OSError) as exc:
            print(f"failover: the lab did not start: {exc}", file=sys.stderr)
            return 2
        if not lab.readiness:
            print("failover: the nodes have no /readyz yet: HAProxy checks by connecting only", flush=True)
        assert lab.publisher is not None
        lab.publisher.ask("start")
        time.sleep(args.warmup)
        lab.cut()
        for name, action, told in (
            ("(a) SIGKILL one node", lab.kill_one, False),
            ("(b) rolling restart (SIGTERM)", lab.rolling_restart, False),
            ("(c) restart Redis", lab.restart_redis, True),
        ):
            try:
                results.append(lab.step(name, action, loss_may_be_told=told))
            except (RuntimeError, TimeoutError, StartError) as exc:
                print(f"failover: {name} did not complete: {exc}", file=sys.stderr)
                _dump_logs(lab)
                return 1
    finally:
        lab.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        f"{args.clients} subscribers over {args.channels} channels, {args.rate:g} publications/s, "
        f"3 nodes behind HAProxy, one Redis"
    )
    print()
    print(markdown_table(results))
    print()
    for r in results:
        failures = ", ".join(f"{k}: {v}" for k, v in sorted(r.publish_failures.items())) or "none"
        print(f"- {r.name}: {r.seconds:.1f} s; publish attempts refused or timed out: {failures}")
    return 0 if all(r.passed for r in results) else 1


def _dump_logs(lab: Lab) -> None:
    for child in lab.children:
        print(f"--- {' '.join(child.argv[:6])}\n{child.output()}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
