"""Side-by-side echo benchmark: wsskit against peer libraries, in one run.

    python bench/run.py                 # the default run, a few minutes
    python bench/run.py --quick         # a short run while developing
    python bench/run.py --sizes 16,4KiB --transports ws --loops uvloop --impls wsskit,picows

For every message size x transport (ws, wss) x event loop (asyncio, uvloop)
x server implementation, a fresh echo server process (bench/servers.py) is
driven by the one client (bench/client.py) in another process; both are
pinned to the same CPU. The client measures round trips per second and the
server's CPU time per round trip. Every combination is repeated, visiting
the implementations in a rotating order, with fresh processes each time.
Results go to bench/results.md (and the samples to bench/results.json).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import select
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IMPLEMENTATIONS = ("wsskit", "websockets", "aiohttp", "picows")
MAX_SIZE = 2**21
DEFAULT_SIZES = "16,1KiB,64KiB"
DEFAULT_REPEAT = 5
QUICK_REPEAT = 2
# Round trips timed per run for messages up to 16 KiB; fewer for larger ones
# (see round_trips_for), so that every run takes a fraction of a second.
DEFAULT_ROUND_TRIPS = 10000
QUICK_ROUND_TRIPS = 500
SERVER_START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 300.0
TIMES = "\u00d7"  # the multiplication sign
DASH = "\u2013"  # an en dash, for ranges
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2**20, "mb": 2**20, "mib": 2**20}


# -- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One table cell: what a run measures."""

    transport: str
    loop: str
    size: int
    impl: str


@dataclass
class Result:
    """The samples of one case, one per repetition (failures kept apart)."""

    case: Case
    samples: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        if key == "us":
            return [s["server_cpu_ns"] / 1000 / s["round_trips"] for s in self.samples]
        if key == "rps":
            return [s["round_trips"] / s["wall_s"] for s in self.samples]
        if key == "client_us":
            return [s["client_cpu_ns"] / 1000 / s["round_trips"] for s in self.samples]
        raise KeyError(key)

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 16, 1KiB, 64KiB)")
    size = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 1 <= size <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"sizes go from 1 byte to {MAX_SIZE} bytes (the servers' limit)")
    return size


def format_size(size: int) -> str:
    for unit, name in ((2**20, "MiB"), (1024, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def round_trips_for(size: int, base: int) -> int:
    """Round trips per run: ``base`` up to 16 KiB, then fewer as bytes grow."""
    return min(base, max(base // 50, 100, base * 16384 // size))


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plan(
    repeat: int, transports: Sequence[str], loops: Sequence[str], sizes: Sequence[int], impls: Sequence[str]
) -> Iterator[tuple[int, Case]]:
    """Every case once per repetition; the implementations in rotating order.

    Repetitions are the outer loop, so that a slow spell of the machine hits
    every implementation alike rather than all runs of one.
    """
    for repetition in range(repeat):
        for transport in transports:
            for loop in loops:
                for index, size in enumerate(sizes):
                    shift = (repetition + index) % len(impls)
                    for impl in (*impls[shift:], *impls[:shift]):
                        yield repetition, Case(transport, loop, size, impl)


# -- one run ---------------------------------------------------------------------------


class RunError(Exception):
    """A server or client process failed; the message says how."""


def start_server(case: Case, certs: Any) -> tuple[subprocess.Popen[str], int]:
    command = [
        sys.executable,
        str(HERE / "servers.py"),
        f"--impl={case.impl}",
        f"--transport={case.transport}",
        f"--loop={case.loop}",
        f"--max-size={MAX_SIZE}",
    ]
    if case.transport == "wss":
        command += [f"--cert={certs.cert}", f"--key={certs.key}"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], SERVER_START_TIMEOUT)
    line = server.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        stop_server(server)
        raise RunError(f"server did not start: {line!r} {_tail(server.stderr)}")
    return server, int(line.split()[1])


def stop_server(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _tail(stream: Any) -> str:
    if stream is None:
        return ""
    try:
        text = str(stream.read())
    except (OSError, ValueError):
        return ""
    return " | ".join(text.strip().splitlines()[-3:])


def run_case(case: Case, args: argparse.Namespace, certs: Any) -> dict[str, Any]:
    server, port = start_server(case, certs)
    try:
        command = [
            sys.executable,
            str(HERE / "client.py"),
            f"--url={case.transport}://127.0.0.1:{port}/",
            f"--server-pid={server.pid}",
            f"--size={case.size}",
            f"--round-trips={round_trips_for(case.size, args.round_trips)}",
            f"--warmup={args.warmup}",
            f"--warmup-large={args.warmup_large}",
            f"--driver={args.driver}",
            f"--loop={args.client_loop}",
        ]
        if case.transport == "wss":
            command.append(f"--cafile={certs.ca_cert}")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RunError(f"client timed out after {CLIENT_TIMEOUT:.0f} s") from exc
        if server.poll() is not None:
            raise RunError(f"server exited with {server.returncode}: {_tail(server.stderr)}")
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RunError(f"client failed: {last[0]}")
        sample: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return sample
    finally:
        stop_server(server)


# -- the report ------------------------------------------------------------------------


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def wsskit_speedups() -> str:
    for module in ("wsskit._speedups", "wsskit.protocol._speedups"):
        if available(module):
            return f"C accelerator present ({module})"
    return "pure Python (no C accelerator built)"


def accelerators() -> str:
    """Which peers run with their compiled parts (they fall back silently otherwise)."""
    checks = (
        ("websockets", "websockets.speedups"),
        ("aiohttp", "aiohttp._websocket.reader_c"),
        ("picows (via aiofastnet)", "aiofastnet"),
    )
    found = []
    for name, module in checks:
        try:
            present = available(module)
        except ImportError:
            present = False
        found.append(f"{name}: {'yes' if present else 'no'}")
    return ", ".join(found)


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return "—"
    return f"{mine / theirs:.2f}{TIMES}"


def cell_us(result: Result) -> str:
    values = result.values("us")
    if not values:
        return "failed"
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}{DASH}{max(values):,.1f})"


def cell_rps(result: Result) -> str:
    values = result.values("rps")
    if not values:
        return "failed"
    return f"{statistics.median(values):,.0f}"


def render(
    results: dict[Case, Result],
    args: argparse.Namespace,
    meta: dict[str, str],
) -> str:
    impls: list[str] = args.impls
    peers = [impl for impl in impls if impl != "wsskit"]
    lines = [
        "# wsskit benchmark: echo round trips, side by side",
        "",
        "Generated by `make bench` (`bench/run.py`); how to read it: `bench/README.md`.",
        "",
        f"- date: {meta['date']}; the run took {meta['duration']}",
        f"- machine: {meta['machine']}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {ssl.OPENSSL_VERSION}",
        "- versions: " + ", ".join(f"{name} {version(name)}" for name in meta["distributions"].split()),
        f"- wsskit: {wsskit_speedups()}; peers' compiled parts: {accelerators()}",
        f"- client: {meta['client']}; server and client pinned to CPU {args.cpu}",
        f"- per run: {meta['round_trips']}; warm-up {args.warmup_large} {TIMES} 1 MiB "
        f"and {args.warmup} {TIMES} the size; {args.repeat} repetitions, fresh processes each",
        f"- load average before / after: {meta['load_before']} / {meta['load_after']}",
        f"- TLS (wss) negotiated: {meta['tls']}",
        "",
        f"Cells: **server CPU µs per round trip**, median (min{DASH}max) over the repetitions, lower is",
        "better; **rt/s**: round trips per second (median), higher is better. `wsskit ÷ X`: wsskit's",
        f"median server CPU per round trip divided by X's (below 1{TIMES} means wsskit spends less CPU).",
    ]
    for transport in args.transports:
        for loop in args.loops:
            lines += ["", f"## {transport}:// on {loop}", ""]
            header = ["size"]
            for impl in impls:
                header += [f"{impl} µs", f"{impl} rt/s"]
            header += [f"wsskit ÷ {peer}" for peer in peers] if "wsskit" in impls else []
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
            for size in args.sizes:
                row = [format_size(size)]
                for impl in impls:
                    result = results[Case(transport, loop, size, impl)]
                    row += [cell_us(result), cell_rps(result)]
                if "wsskit" in impls:
                    mine = results[Case(transport, loop, size, "wsskit")].median("us")
                    for peer in peers:
                        row.append(_ratio(mine, results[Case(transport, loop, size, peer)].median("us")))
                lines.append("| " + " | ".join(row) + " |")
    failures = [(case, why) for case, result in results.items() for why in result.failures]
    if failures:
        lines += ["", "## Failed runs", ""]
        for case, why in failures:
            lines.append(f"- {case.impl}, {case.transport}, {case.loop}, {format_size(case.size)}: {why}")
    lines.append("")
    return "\n".join(lines)


# -- entry point -----------------------------------------------------------------------


def _csv(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        wrong = [item for item in items if item not in choices]
        if wrong or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer round trips and repetitions")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated (default {DEFAULT_SIZES})")
    parser.add_argument("--transports", type=_csv(("ws", "wss")), default=["ws", "wss"])
    parser.add_argument("--loops", type=_csv(("asyncio", "uvloop")), default=None)
    parser.add_argument("--impls", type=_csv(IMPLEMENTATIONS), default=None)
    parser.add_argument("--repeat", type=int, default=None, help=f"repetitions (default {DEFAULT_REPEAT})")
    parser.add_argument(
        "--round-trips",
        type=int,
        default=None,
        help=f"timed round trips per run up to 16 KiB, fewer above (default {DEFAULT_ROUND_TRIPS})",
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed round trips of the size first")
    parser.add_argument("--warmup-large", type=int, default=4, help="untimed 1 MiB round trips first")
    parser.add_argument(
        "--driver", choices=("picows", "raw"), default=None, help="the client (see client.py)"
    )
    parser.add_argument("--client-loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one allowed)")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    try:
        args.sizes = [parse_size(text) for text in args.sizes.split(",") if text.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
    if args.round_trips is None:
        args.round_trips = QUICK_ROUND_TRIPS if args.quick else DEFAULT_ROUND_TRIPS
    if args.warmup is None:
        args.warmup = 50 if args.quick else 200
    if args.repeat < 1 or args.round_trips < 1:
        parser.error("--repeat and --round-trips must be positive")
    if args.loops is None:
        args.loops = ["asyncio", "uvloop"] if available("uvloop") else ["asyncio"]
    elif "uvloop" in args.loops and not available("uvloop"):
        parser.error("uvloop is not installed")
    if args.impls is None:
        args.impls = [impl for impl in IMPLEMENTATIONS if available(impl)]
    missing = [impl for impl in args.impls if not available(impl)]
    if missing:
        parser.error(f"not installed: {', '.join(missing)}")
    if args.driver is None:
        args.driver = "picows" if available("picows") else "raw"
    if args.client_loop is None:
        args.client_loop = "uvloop" if available("uvloop") else "asyncio"
    allowed = sorted(os.sched_getaffinity(0))
    if args.cpu is None:
        args.cpu = allowed[-1]
    elif args.cpu not in allowed:
        parser.error(f"CPU {args.cpu} is not one of {allowed}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Children inherit the affinity: server and client share this one CPU, so
    # what they cost shows as CPU time rather than as parallelism.
    os.sched_setaffinity(0, {args.cpu})
    from wsskit.certs import ensure_dev_certificates

    started = time.monotonic()
    load_before = load_average()
    results = {case: Result(case) for _, case in plan(1, args.transports, args.loops, args.sizes, args.impls)}
    steps = list(plan(args.repeat, args.transports, args.loops, args.sizes, args.impls))
    ciphers: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="wsskit-bench-") as directory:
        certs, _ = ensure_dev_certificates(Path(directory))
        for number, (repetition, case) in enumerate(steps, 1):
            label = f"{case.transport}/{case.loop}/{format_size(case.size)}/{case.impl}"
            try:
                sample = run_case(case, args, certs)
            except (RunError, OSError, ValueError) as exc:
                results[case].failures.append(str(exc))
                print(f"[{number}/{len(steps)}] rep {repetition + 1} {label}: FAILED {exc}", flush=True)
                continue
            results[case].samples.append(sample)
            if sample.get("tls"):
                ciphers.setdefault(case.impl, set()).add(sample["tls"])
            us = sample["server_cpu_ns"] / 1000 / sample["round_trips"]
            rps = sample["round_trips"] / sample["wall_s"]
            progress = f"[{number}/{len(steps)}] rep {repetition + 1} {label}"
            print(f"{progress}: {us:.1f} µs/rt server, {rps:,.0f} rt/s", flush=True)
    elapsed = time.monotonic() - started
    distributions = "wsskit websockets aiohttp picows aiofastnet uvloop"
    tls = "; ".join(f"{impl}: {', '.join(sorted(seen))}" for impl, seen in sorted(ciphers.items()))
    trips = ", ".join(
        f"{round_trips_for(size, args.round_trips)} round trips at {format_size(size)}" for size in args.sizes
    )
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": f"{elapsed / 60:.1f} min" if elapsed >= 90 else f"{elapsed:.0f} s",
        "machine": f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}",
        "distributions": distributions,
        "client": f"{args.driver} driver" + (f" on {args.client_loop}" if args.driver == "picows" else ""),
        "round_trips": trips,
        "load_before": load_before,
        "load_after": load_average(),
        "tls": tls or "(no wss runs)",
    }
    report = render(results, args, meta)
    args.output.write_text(report, encoding="utf-8")
    raw = {
        "meta": meta,
        "results": [
            {**case.__dict__, "samples": result.samples, "failures": result.failures}
            for case, result in results.items()
        ],
    }
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(f"\n{report}\nwrote {args.output} in {meta['duration']}")
    return 1 if any(result.failures for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
