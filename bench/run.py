"""Side-by-side benchmark: wsskit against peer libraries, everything in one run.

    python bench/run.py                   # the full run, about 15 minutes on 2 cores
    python bench/run.py --quick           # a short run while developing, about a minute
    python bench/run.py --sections echo,memory --impls wsskit,websockets --loops uvloop

Sections (``--sections``, all by default; bench/README.md says what each measures):

- ``echo``: server CPU per round trip, one connection, the fixed picows client;
- ``client``: client CPU per round trip of each library's client against a picows server;
- ``throughput``: messages per second over 100 connections, load generator on the other CPU;
- ``broadcast``: time for one 1 KiB message to reach 1 000 and 10 000 clients;
- ``memory``: server RSS per idle connection (ws, wss, wss with permessage-deflate);
- ``deflate``: server CPU per round trip of 64 KiB JSON-like text, compression on and off.

Every case is repeated (``--repeat``, 5), repetitions are the outer loop,
the implementations are visited in a rotating order, and every
measurement uses fresh processes. Results go to bench/results.md (the
report), bench/results.json (every sample) and bench/results.png (a chart).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    cpu_ns,
    format_size,
    nofile_hard_limit,
    parse_size,
    raise_nofile,
    rss_bytes,
)

HERE = Path(__file__).resolve().parent
IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp", "picows")
DEFLATE_IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp")
BROADCAST_IMPLEMENTATIONS = ("wsskit", "websockets", "picows")
SECTIONS = ("echo", "client", "throughput", "broadcast", "memory", "deflate")
DEFLATE_SIZE = 64 * 1024
BROADCAST_SIZE = 1024
BROADCAST_WARMUP = 2
WARM_CONNECTIONS = 10  # memory: opened before the baseline reading
CROWD_SHARE = 2500  # connections per crowd process
SERVER_START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 150.0  # the programs give up after 120 s themselves
STEP_TIMEOUT = 120.0


# -- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One table cell: what a run measures.

    ``impl`` is the server under test, except in the client section where it
    is the client; ``size`` is the message size; ``clients`` the number of
    connections (throughput, broadcast, memory).
    """

    section: str
    impl: str
    transport: str = "ws"
    loop: str = "asyncio"
    size: int = 0
    clients: int = 1
    deflate: bool = False

    def label(self) -> str:
        parts = [self.section, self.transport, self.loop]
        if self.size:
            parts.append(format_size(self.size))
        if self.clients > 1:
            parts.append(f"{self.clients} conns")
        if self.deflate:
            parts.append("deflate")
        return "/".join(parts) + f"/{self.impl}"


@dataclass
class Result:
    """The samples of one case, one per repetition (failures kept apart)."""

    case: Case
    samples: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [float(s["metrics"][metric]) for s in self.samples if metric in s.get("metrics", {})]

    def median(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.median(values) if values else None


def round_trips_for(size: int, base: int) -> int:
    """Round trips per run: ``base`` up to 16 KiB, then fewer as bytes grow."""
    return min(base, max(base // 50, 100, base * 16384 // size))


def _rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= max(len(items), 1)
    return [*items[shift:], *items[:shift]]


def cases_of(section: str, args: argparse.Namespace, repetition: int) -> list[Case]:
    """The cases of one section, implementations in an order that rotates per repetition."""
    impls: list[str] = args.impls
    groups: list[tuple[list[str], dict[str, Any]]] = []
    if section == "echo":
        for transport in args.transports:
            for loop in args.loops:
                for size in args.sizes:
                    groups.append((impls, {"transport": transport, "loop": loop, "size": size}))
    elif section == "client":
        for transport in args.client_transports:
            for loop in args.loops:
                for size in args.client_sizes:
                    groups.append((impls, {"transport": transport, "loop": loop, "size": size}))
    elif section == "throughput":
        for transport in args.throughput_transports:
            for loop in args.loops:
                for size in args.throughput_sizes:
                    params = {"transport": transport, "loop": loop, "size": size, "clients": args.connections}
                    groups.append((impls, params))
    elif section == "broadcast":
        chosen = [impl for impl in args.broadcast_impls if impl in impls]
        for loop in args.loops:
            for clients in args.broadcast_clients:
                groups.append((chosen, {"loop": loop, "size": BROADCAST_SIZE, "clients": clients}))
    elif section == "memory":
        for loop in args.memory_loops:
            for transport, deflate in (("ws", False), ("wss", False), ("wss", True)):
                chosen = [i for i in impls if not deflate or i in DEFLATE_IMPLEMENTATIONS]
                params = {"transport": transport, "loop": loop, "clients": args.idle_connections}
                groups.append((chosen, {**params, "deflate": deflate}))
    elif section == "deflate":
        for transport in args.deflate_transports:
            for loop in args.loops:
                for deflate in (True, False):
                    chosen = [i for i in impls if not deflate or i in DEFLATE_IMPLEMENTATIONS]
                    params = {"transport": transport, "loop": loop, "size": DEFLATE_SIZE, "deflate": deflate}
                    groups.append((chosen, params))
    cases = []
    for index, (chosen, params) in enumerate(groups):
        for impl in _rotated(chosen, repetition + index):
            cases.append(Case(section, impl, **params))
    return cases


def plan(args: argparse.Namespace) -> Iterator[tuple[int, Case]]:
    """Every case once per repetition. Repetitions are the outer loop, so that a
    slow spell of the machine hits every implementation alike rather than all
    runs of one."""
    for repetition in range(args.repeat):
        for section in args.sections:
            for case in cases_of(section, args, repetition):
                yield repetition, case


# -- processes -------------------------------------------------------------------------


class RunError(Exception):
    """A process failed or took too long; the message says how."""


class Child:
    """A child process pinned to some CPUs, with line-based stdin and stdout."""

    def __init__(self, command: list[str], cpus: set[int], name: str) -> None:
        self.name = name
        # stderr goes to a file: a pipe could fill up and block the child.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            bufsize=0,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        self.buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode() + b"\n")
        except OSError as exc:
            raise RunError(f"{self.name} is gone: {self.stderr_tail()}") from exc

    def readline(self, timeout: float) -> str:
        """The next line the child prints; RunError if none comes within ``timeout`` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise RunError(f"{self.name}: no answer within {timeout:.0f} s {self.stderr_tail()}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self.process.wait(5)
                raise RunError(f"{self.name} exited with {self.process.returncode}: {self.stderr_tail()}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().strip()

    def expect(self, word: str, timeout: float) -> list[str]:
        line = self.readline(timeout)
        words = line.split()
        if not words or words[0] != word:
            raise RunError(f"{self.name}: expected {word}, got {line[:200]!r} {self.stderr_tail()}")
        return words[1:]

    def stderr_tail(self) -> str:
        try:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        lines = text.strip().splitlines()[-3:]
        return ("| " + " | ".join(lines)) if lines else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.log.close()


class Children:
    """Every process of one measurement; all stopped at the end, servers first."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            child.stop()

    def start(self, command: list[str], cpus: set[int], name: str) -> Child:
        child = Child(command, cpus, name)
        self.children.append(child)
        return child


@dataclass
class Context:
    """What every measurement needs: options, certificates, CPUs."""

    args: argparse.Namespace
    certs: Any
    server_cpus: set[int]
    other_cpus: set[int]
    seen: dict[str, set[str]] = field(default_factory=dict)

    def note(self, key: str, value: str | None) -> None:
        if value:
            self.seen.setdefault(key, set()).add(value)


def start_server(
    children: Children, ctx: Context, impl: str, transport: str, loop: str, deflate: bool = False
) -> tuple[Child, int]:
    command = [
        sys.executable,
        str(HERE / "servers.py"),
        f"--impl={impl}",
        f"--transport={transport}",
        f"--loop={loop}",
        f"--compression={'deflate' if deflate else 'off'}",
    ]
    if transport == "wss":
        command += [f"--cert={ctx.certs.cert}", f"--key={ctx.certs.key}"]
    server = children.start(command, ctx.server_cpus, f"{impl} server")
    return server, int(server.expect("PORT", SERVER_START_TIMEOUT)[0])


def count_connections(server: Child, wanted: int, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.send("COUNT")
        have = int(server.expect("COUNT", 30)[0])
        if have >= wanted:
            return
        if time.monotonic() > deadline:
            raise RunError(f"the server has {have} connections, not {wanted}")
        time.sleep(0.05)


def run_program(
    command: list[str], cpus: set[int], server: Child, timeout: float = CLIENT_TIMEOUT
) -> dict[str, Any]:
    """Run a measuring program to its end; return the JSON object it printed last."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
    except subprocess.TimeoutExpired as exc:
        raise RunError(
            f"{Path(command[1]).name} timed out after {timeout:.0f} s {server.stderr_tail()}"
        ) from exc
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RunError(f"{Path(command[1]).name} failed: {last[0]} {server.stderr_tail()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _url(transport: str, port: int) -> str:
    return f"{transport}://127.0.0.1:{port}/"


def _tls_args(ctx: Context, transport: str) -> list[str]:
    return [f"--cafile={ctx.certs.ca_cert}"] if transport == "wss" else []


# -- the measurements ------------------------------------------------------------------


def _round_trip_sample(sample: dict[str, Any]) -> dict[str, Any]:
    trips = sample["round_trips"]
    sample["metrics"] = {
        "us": sample["server_cpu_ns"] / 1000 / trips,
        "client_us": sample["client_cpu_ns"] / 1000 / trips,
        "rps": trips / sample["wall_s"],
    }
    if sample.get("wire_bytes") is not None:
        sample["metrics"]["wire"] = sample["wire_bytes"]
    return sample


def _client_command(
    ctx: Context, server: Child, port: int, transport: str, size: int, trips: int, driver: str, loop: str
) -> list[str]:
    args = ctx.args
    return [
        sys.executable,
        str(HERE / "client.py"),
        f"--url={_url(transport, port)}",
        f"--server-pid={server.pid}",
        f"--size={size}",
        f"--round-trips={trips}",
        f"--warmup={args.warmup}",
        f"--warmup-large={args.warmup_large}",
        f"--driver={driver}",
        f"--loop={loop}",
        *_tls_args(ctx, transport),
    ]


def measure_echo(case: Case, ctx: Context) -> dict[str, Any]:
    """Server CPU per round trip: the case's server, the fixed client, one CPU for both."""
    args = ctx.args
    with Children() as children:
        server, port = start_server(children, ctx, case.impl, case.transport, case.loop)
        trips = round_trips_for(case.size, args.round_trips)
        command = _client_command(
            ctx, server, port, case.transport, case.size, trips, args.driver, args.client_loop
        )
        sample = run_program(command, ctx.server_cpus, server)
    ctx.note(f"tls {case.impl}", sample.get("tls"))
    return _round_trip_sample(sample)


def measure_client(case: Case, ctx: Context) -> dict[str, Any]:
    """Client CPU per round trip: the case's client against the fixed server, one CPU for both."""
    args = ctx.args
    with Children() as children:
        server, port = start_server(children, ctx, "picows", case.transport, args.client_server_loop)
        trips = round_trips_for(case.size, args.round_trips)
        command = _client_command(ctx, server, port, case.transport, case.size, trips, case.impl, case.loop)
        sample = run_program(command, ctx.server_cpus, server)
    return _round_trip_sample(sample)


def measure_deflate(case: Case, ctx: Context) -> dict[str, Any]:
    """Server CPU per round trip of compressible text, permessage-deflate on or off."""
    args = ctx.args
    with Children() as children:
        server, port = start_server(children, ctx, case.impl, case.transport, case.loop, case.deflate)
        trips = max(50, args.round_trips // 20)
        command = _client_command(ctx, server, port, case.transport, case.size, trips, "raw", "asyncio")
        command.append("--payload=json")
        if case.deflate:
            command.append("--deflate")
        sample = run_program(command, ctx.server_cpus, server)
    ctx.note(f"deflate {case.impl}", sample.get("extensions") if case.deflate else None)
    return _round_trip_sample(sample)


def measure_throughput(case: Case, ctx: Context) -> dict[str, Any]:
    """Messages per second over many connections, the load generator on the other CPU."""
    args = ctx.args
    with Children() as children:
        server, port = start_server(children, ctx, case.impl, case.transport, case.loop)
        command = [
            sys.executable,
            str(HERE / "load.py"),
            f"--url={_url(case.transport, port)}",
            f"--server-pid={server.pid}",
            f"--connections={case.clients}",
            f"--size={case.size}",
            f"--duration={args.duration}",
            f"--warmup={min(0.5, args.duration / 2)}",
            f"--loop={args.client_loop}",
            *_tls_args(ctx, case.transport),
        ]
        sample = run_program(command, ctx.other_cpus, server)
    wall = sample["wall_s"]
    sample["metrics"] = {
        "mps": sample["messages"] / wall,
        "server_util": sample["server_cpu_ns"] / 1e9 / wall,
        "load_util": sample["load_cpu_ns"] / 1e9 / wall,
        "us": sample["server_cpu_ns"] / 1000 / max(sample["messages"], 1),
    }
    return sample


def _crowd_shares(total: int) -> list[int]:
    processes = max(1, math.ceil(total / CROWD_SHARE))
    return [total // processes + (1 if index < total % processes else 0) for index in range(processes)]


def _start_crowds(
    children: Children, ctx: Context, url: str, total: int, mode: str, extra: Sequence[str]
) -> list[Child]:
    crowds = []
    for index, share in enumerate(_crowd_shares(total)):
        command = [
            sys.executable,
            str(HERE / "crowd.py"),
            f"--url={url}",
            f"--connections={share}",
            f"--mode={mode}",
            *extra,
        ]
        # The broadcast's clients stay off the server's CPU; for memory, where
        # only the server's RSS counts, the crowds may use every CPU (quicker).
        cpus = ctx.other_cpus if mode == "listen" else ctx.server_cpus | ctx.other_cpus
        crowds.append(children.start(command, cpus, f"crowd {index + 1}"))
    return crowds


def measure_broadcast(case: Case, ctx: Context) -> dict[str, Any]:
    """Time for one message to reach every client, and the server CPU it took."""
    args = ctx.args
    messages = BROADCAST_WARMUP + args.broadcasts
    with Children() as children:
        server, port = start_server(children, ctx, case.impl, "ws", case.loop)
        crowds = _start_crowds(
            children, ctx, _url("ws", port), case.clients, "listen", [f"--messages={messages}"]
        )
        for crowd in crowds:
            crowd.expect("READY", STEP_TIMEOUT * 2)
        count_connections(server, case.clients)
        sent: list[tuple[int, int, int]] = []
        how = ""
        for number in range(1, messages + 1):
            time.sleep(0.05)  # let the previous message's ACKs and wake-ups settle
            before = cpu_ns(server.pid)
            server.send(f"BROADCAST {case.size}")
            start, end, reached, how = server.expect("SENT", STEP_TIMEOUT)
            if int(reached) != case.clients:
                raise RunError(f"broadcast to {reached} connections, not {case.clients}")
            for crowd in crowds:
                if crowd.expect("GOT", STEP_TIMEOUT) != [str(number)]:
                    raise RunError(f"{crowd.name}: out of step")
            sent.append((int(start), int(end), cpu_ns(server.pid) - before))
        reports = [json.loads(crowd.readline(STEP_TIMEOUT)) for crowd in crowds]
    ctx.note(f"broadcast {case.impl}", how)
    timed = []
    for index in range(BROADCAST_WARMUP, messages):
        t0, t1, cpu = sent[index]
        arrivals = sorted(stamp for report in reports for stamp in report["arrivals"][index])
        timed.append(
            {
                "all_ms": (arrivals[-1] - t0) / 1e6,
                "p50_ms": (arrivals[len(arrivals) // 2] - t0) / 1e6,
                "first_ms": (arrivals[0] - t0) / 1e6,
                "call_ms": (t1 - t0) / 1e6,
                "cpu_us": cpu / 1000 / case.clients,
            }
        )
    kernel = sum(report["kernel"] for report in reports)
    user = sum(report["user"] for report in reports)
    metrics = {key: statistics.median(entry[key] for entry in timed) for key in timed[0]}
    return {"broadcasts": timed, "how": how, "kernel_stamps": kernel, "user_stamps": user, "metrics": metrics}


def measure_memory(case: Case, ctx: Context) -> dict[str, Any]:
    """Server RSS growth per idle connection."""
    extra = [*_tls_args(ctx, case.transport), *(["--deflate"] if case.deflate else [])]
    with Children() as children:
        server, port = start_server(children, ctx, case.impl, case.transport, case.loop, case.deflate)
        url = _url(case.transport, port)
        warm = _start_crowds(children, ctx, url, WARM_CONNECTIONS, "hold", extra)[0]
        warm.expect("READY", STEP_TIMEOUT)
        count_connections(server, WARM_CONNECTIONS)
        time.sleep(0.2)
        before = rss_bytes(server.pid)
        started = time.monotonic()
        crowds = _start_crowds(children, ctx, url, case.clients, "hold", extra)
        negotiated = 0
        for crowd in crowds:
            negotiated += int(crowd.expect("READY", STEP_TIMEOUT * 2)[1])
        count_connections(server, WARM_CONNECTIONS + case.clients)
        setup = time.monotonic() - started
        time.sleep(0.2)
        after = rss_bytes(server.pid)
    if case.deflate and negotiated != case.clients:
        raise RunError(f"permessage-deflate negotiated on {negotiated} of {case.clients} connections")
    return {
        "rss_before": before,
        "rss_after": after,
        "connections": case.clients,
        "setup_s": setup,
        "metrics": {"kib": (after - before) / case.clients / 1024},
    }


MEASURES = {
    "echo": measure_echo,
    "client": measure_client,
    "throughput": measure_throughput,
    "broadcast": measure_broadcast,
    "memory": measure_memory,
    "deflate": measure_deflate,
}


def progress_text(case: Case, sample: dict[str, Any]) -> str:
    metrics = sample["metrics"]
    if case.section == "echo":
        return f"{metrics['us']:.1f} µs/rt server, {metrics['rps']:,.0f} rt/s"
    if case.section == "client":
        return f"{metrics['client_us']:.1f} µs/rt client, {metrics['rps']:,.0f} rt/s"
    if case.section == "throughput":
        return f"{metrics['mps']:,.0f} msg/s, server CPU {metrics['server_util']:.0%}"
    if case.section == "broadcast":
        return f"all reached in {metrics['all_ms']:.1f} ms (call {metrics['call_ms']:.1f} ms)"
    if case.section == "memory":
        return f"{metrics['kib']:.1f} KiB per connection"
    return f"{metrics['us']:.1f} µs/rt server" + (
        f", {metrics['wire']:,.0f} B on the wire" if "wire" in metrics else ""
    )


# -- entry point -----------------------------------------------------------------------


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _csv(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        wrong = [item for item in items if item not in choices]
        if wrong or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return items

    return parse


def _sizes(text: str) -> list[int]:
    return [parse_size(item) for item in text.split(",") if item.strip()]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(item.replace("_", "")) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("counts must be positive")
    return counts


# (full run, --quick) defaults of the options that --quick changes
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "repeat": (5, 2),
    "round_trips": (10000, 500),
    "warmup": (200, 50),
    "sizes": ("16,1KiB,64KiB,1MiB", "16,64KiB"),
    "client_sizes": ("16,1KiB,64KiB", "16,64KiB"),
    "loops": ("asyncio,uvloop", "uvloop"),
    "client_transports": ("ws,wss", "ws"),
    "throughput_transports": ("ws,wss", "ws"),
    "throughput_sizes": ("1KiB", "1KiB"),
    "duration": (0.5, 0.3),
    "broadcast_clients": ("1000,10000", "1000"),
    "broadcasts": (3, 2),
    "idle_connections": (5000, 300),
    "memory_loops": ("asyncio,uvloop", "uvloop"),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small grid, 2 repetitions (about a minute)")
    parser.add_argument("--sections", type=_csv(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--impls", type=_csv(IMPLEMENTATIONS), default=None)
    parser.add_argument("--transports", type=_csv(("ws", "wss")), default=["ws", "wss"], help="echo")
    parser.add_argument(
        "--loops", type=_csv(("asyncio", "uvloop")), default=None, help="server (client) loops"
    )
    parser.add_argument("--sizes", default=None, help="echo message sizes, e.g. 16,1KiB,64KiB,1MiB")
    parser.add_argument("--client-sizes", default=None, help="client section message sizes")
    parser.add_argument("--client-transports", type=_csv(("ws", "wss")), default=None)
    parser.add_argument("--throughput-transports", type=_csv(("ws", "wss")), default=None)
    parser.add_argument("--throughput-sizes", default=None)
    parser.add_argument("--connections", type=int, default=100, help="throughput: concurrent connections")
    parser.add_argument("--duration", type=float, default=None, help="throughput: seconds timed per run")
    parser.add_argument("--broadcast-clients", type=_counts, default=None, help="e.g. 1000,10000")
    parser.add_argument("--broadcasts", type=int, default=None, help="timed broadcasts per run (median)")
    parser.add_argument(
        "--broadcast-impls",
        type=_csv(BROADCAST_IMPLEMENTATIONS),
        default=["wsskit", "websockets"],
        help="servers in the broadcast section (picows, a loop of sends in C, is a reference)",
    )
    parser.add_argument("--idle-connections", type=int, default=None, help="memory: connections opened")
    parser.add_argument("--memory-loops", type=_csv(("asyncio", "uvloop")), default=None)
    parser.add_argument("--deflate-transports", type=_csv(("ws", "wss")), default=["ws"])
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument(
        "--round-trips", type=int, default=None, help="echo/client: timed round trips up to 16 KiB (10000)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed round trips of the size first")
    parser.add_argument("--warmup-large", type=int, default=4, help="untimed 1 MiB round trips first")
    parser.add_argument("--driver", choices=("picows", "raw"), default=None, help="the fixed echo client")
    parser.add_argument("--client-loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument(
        "--cpu", type=int, default=None, help="the servers' CPU (default: the last one allowed)"
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--no-chart", action="store_true", help="skip results.png")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="only render the report again from an earlier results.json",
    )
    args = parser.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    try:
        for name in ("sizes", "client_sizes", "throughput_sizes"):
            value = getattr(args, name)
            setattr(args, name, _sizes(value) if isinstance(value, str) else value)
        for name in ("loops", "memory_loops", "client_transports", "throughput_transports"):
            value = getattr(args, name)
            setattr(
                args,
                name,
                _csv(("asyncio", "uvloop", "ws", "wss"))(value) if isinstance(value, str) else value,
            )
        if isinstance(args.broadcast_clients, str):
            args.broadcast_clients = _counts(args.broadcast_clients)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if min(args.repeat, args.round_trips, args.broadcasts, args.idle_connections, args.connections) < 1:
        parser.error(
            "--repeat, --round-trips, --broadcasts, --idle-connections and --connections must be positive"
        )
    if not available("uvloop"):
        print("bench: uvloop is not installed: asyncio only", file=sys.stderr)
        args.loops = [loop for loop in args.loops if loop != "uvloop"] or ["asyncio"]
        args.memory_loops = [loop for loop in args.memory_loops if loop != "uvloop"] or ["asyncio"]
    if args.impls is None:
        args.impls = [impl for impl in IMPLEMENTATIONS if available(impl)]
    missing = [impl for impl in args.impls if not available(impl)]
    if missing:
        parser.error(f"not installed: {', '.join(missing)}")
    if args.driver is None:
        args.driver = "picows" if available("picows") else "raw"
    if args.client_loop is None:
        args.client_loop = "uvloop" if available("uvloop") else "asyncio"
    args.client_server_loop = "uvloop" if available("uvloop") else "asyncio"
    if not available("picows"):
        for section in ("client", "throughput"):
            if section in args.sections:
                print(f"bench: picows is not installed: no {section} section", file=sys.stderr)
                args.sections.remove(section)
    allowed = sorted(os.sched_getaffinity(0))
    if args.cpu is None:
        args.cpu = allowed[-1]
    elif args.cpu not in allowed:
        parser.error(f"CPU {args.cpu} is not one of {allowed}")
    args.other_cpus = sorted(set(allowed) - {args.cpu}) or [args.cpu]
    needed = max([*args.broadcast_clients, args.idle_connections + WARM_CONNECTIONS]) + 64
    if {"broadcast", "memory"} & set(args.sections) and nofile_hard_limit() < needed:
        parser.error(
            f"the hard limit on open files is {nofile_hard_limit()}; the server needs {needed}: "
            "raise it (ulimit -Hn, /etc/security/limits.conf) or lower --broadcast-clients/--idle-connections"
        )
    return args


def _load_json(path: Path) -> tuple[dict[Case, Result], dict[str, Any], argparse.Namespace]:
    """Results, metadata and options of an earlier run, to render its report again."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    results: dict[Case, Result] = {}
    for entry in raw["results"]:
        fields = {key: entry[key] for key in Case.__dataclass_fields__}
        case = Case(**fields)
        results[case] = Result(case, entry["samples"], entry["failures"])
    # Options added since that run take their defaults.
    options = {**vars(parse_args([])), **raw["options"]}
    return results, raw["meta"], argparse.Namespace(**options)


def write_outputs(
    results: dict[Case, Result], args: argparse.Namespace, meta: dict[str, Any], output: Path, chart: bool
) -> str:
    import report

    text = report.render(results, args, meta)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    raw = {
        "meta": meta,
        "options": {key: value for key, value in vars(args).items() if key not in ("output", "from_json")},
        "results": [
            {**asdict(case), "samples": result.samples, "failures": result.failures}
            for case, result in results.items()
        ],
    }
    output.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    if chart:
        path = output.with_suffix(".png")
        why = report.chart(results, args, path)
        print(f"chart: {why or path}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        earlier, meta, old = _load_json(args.from_json)
        write_outputs(earlier, old, meta, args.output, not args.no_chart)
        print(f"wrote {args.output} from {args.from_json}")
        return 0
    raise_nofile()
    import report

    from wsskit.certs import ensure_dev_certificates

    started = time.monotonic()
    load_before = report.load_average()
    steps = list(plan(args))
    results: dict[Case, Result] = {}
    for _, case in steps:
        results.setdefault(case, Result(case))
    with tempfile.TemporaryDirectory(prefix="wsskit-bench-") as directory:
        certs, _ = ensure_dev_certificates(Path(directory))
        ctx = Context(args, certs, {args.cpu}, set(args.other_cpus))
        for number, (repetition, case) in enumerate(steps, 1):
            head = f"[{number}/{len(steps)}] rep {repetition + 1} {case.label()}"
            step_started = time.monotonic()
            try:
                sample = MEASURES[case.section](case, ctx)
            except (RunError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                results[case].failures.append(str(exc))
                print(f"{head}: FAILED {exc}", flush=True)
                continue
            results[case].samples.append(sample)
            took = time.monotonic() - step_started
            print(f"{head}: {progress_text(case, sample)} [{took:.1f} s]", flush=True)
    elapsed = time.monotonic() - started
    meta = report.metadata(args, ctx.seen, elapsed, load_before)
    text = write_outputs(results, args, meta, args.output, not args.no_chart)
    print(f"\n{text}\nwrote {args.output} in {meta['duration']}")
    return 1 if any(result.failures for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
