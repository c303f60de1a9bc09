"""The report of a benchmark run: bench/results.md (Markdown) and bench/results.png (a chart).

Used by bench/run.py; bench/README.md says how to read the report.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import ssl
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import format_size, nofile_hard_limit

if TYPE_CHECKING:
    from run import Case, Result

TIMES = "\u00d7"  # the multiplication sign
DASH = "\u2013"  # an en dash, for ranges
NA = "n/a"
MISSING = "\u2014"  # an em dash: not measured
DISTRIBUTIONS = ("wsskit", "websockets", "aiohttp", "picows", "aiofastnet", "uvloop", "matplotlib")


# -- metadata ---------------------------------------------------------------------------


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


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def wsskit_speedups() -> str:
    for module in ("wsskit._speedups", "wsskit.protocol._speedups"):
        if _available(module):
            return f"C accelerator present ({module})"
    return "pure Python (no C accelerator built)"


def accelerators() -> str:
    """Which peers run with their compiled parts (they fall back silently otherwise)."""
    checks = (
        ("websockets", "websockets.speedups"),
        ("aiohttp", "aiohttp._websocket.reader_c"),
        ("picows (via aiofastnet)", "aiofastnet"),
    )
    return ", ".join(f"{name}: {'yes' if _available(module) else 'no'}" for name, module in checks)


def metadata(
    args: argparse.Namespace, seen: dict[str, set[str]], elapsed: float, load_before: str
) -> dict[str, str]:
    def joined(prefix: str) -> str:
        items = sorted((key[len(prefix) :], values) for key, values in seen.items() if key.startswith(prefix))
        return "; ".join(f"{name}: {', '.join(sorted(values))}" for name, values in items) or "(none)"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": f"{elapsed / 60:.1f} min" if elapsed >= 90 else f"{elapsed:.0f} s",
        "mode": "quick (--quick: a small grid, 2 repetitions; for development)" if args.quick else "full",
        "machine": f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}",
        "python": f"Python {platform.python_version()} ({platform.python_implementation()}), "
        + ssl.OPENSSL_VERSION,
        "versions": ", ".join(f"{name} {version(name)}" for name in DISTRIBUTIONS),
        "compiled": f"wsskit: {wsskit_speedups()}; peers' compiled parts: {accelerators()}",
        "client": f"{args.driver} driver" + (f" on {args.client_loop}" if args.driver == "picows" else ""),
        "cpus": f"servers on CPU {args.cpu}; load generator and crowds on CPU(s) "
        f"{','.join(map(str, args.other_cpus))}",
        "load_before": load_before,
        "load_after": load_average(),
        "tls": joined("tls "),
        "broadcast": joined("broadcast "),
        "deflate": joined("deflate "),
        "nofile": str(nofile_hard_limit()),
    }


# -- cells ------------------------------------------------------------------------------


Results = dict["Case", "Result"]


def _find(results: Results, **match: Any) -> Result | None:
    for case, result in results.items():
        if all(getattr(case, key) == value for key, value in match.items()):
            return result
    return None


def _median(results: Results, metric: str, **match: Any) -> float | None:
    result = _find(results, **match)
    return result.median(metric) if result is not None else None


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def spread(result: Result | None, metric: str, digits: int = 1, unit: str = "") -> str:
    """``median (min-max)`` of a case, or why there is none."""
    if result is None:
        return MISSING
    values = result.values(metric)
    if not values:
        return "failed" if result.failures else MISSING
    middle = _number(statistics.median(values), digits)
    if len(values) == 1:
        return f"{middle}{unit}"
    return f"{middle}{unit} ({_number(min(values), digits)}{DASH}{_number(max(values), digits)})"


def plain(result: Result | None, metric: str, digits: int = 1, unit: str = "") -> str:
    if result is None:
        return MISSING
    value = result.median(metric)
    if value is None:
        return "failed" if result.failures else MISSING
    return f"{_number(value, digits)}{unit}"


def ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return MISSING
    return f"{mine / theirs:.2f}{TIMES}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _runs(count: int, word: str = "run") -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _peers(impls: Sequence[str]) -> list[str]:
    return [impl for impl in impls if impl != "wsskit"] if "wsskit" in impls else []


# -- targets -------------------------------------------------------------------------------


@dataclass
class Verdict:
    target: str
    where: str
    measured: str
    met: bool | None  # None: not measured

    @property
    def word(self) -> str:
        return "not measured" if self.met is None else ("**met**" if self.met else "**missed**")


def _worst_ratio(
    results: Results, section: str, metric: str, peer: str, sizes: Sequence[int], **match: Any
) -> tuple[float | None, int | None]:
    """The largest wsskit ÷ peer ratio over ``sizes``, and at which size."""
    worst: tuple[float | None, int | None] = (None, None)
    for size in sizes:
        mine = _median(results, metric, section=section, impl="wsskit", size=size, **match)
        theirs = _median(results, metric, section=section, impl=peer, size=size, **match)
        if mine is None or theirs is None or theirs == 0:
            continue
        value = mine / theirs
        if worst[0] is None or value > worst[0]:
            worst = (value, size)
    return worst


def _ratio_verdicts(
    results: Results,
    args: argparse.Namespace,
    target: str,
    section: str,
    metric: str,
    peer: str,
    bound: float,
    sizes: Sequence[int],
    transports: Sequence[str],
) -> list[Verdict]:
    verdicts = []
    for transport in transports:
        parts = []
        met: bool | None = None
        for loop in args.loops:
            value, size = _worst_ratio(results, section, metric, peer, sizes, transport=transport, loop=loop)
            if value is None or size is None:
                continue
            parts.append(f"{loop} {value:.2f}{TIMES}" + (f" ({format_size(size)})" if len(sizes) > 1 else ""))
            met = (met is not False) and value <= bound
        where = f"{transport}://, " + ", ".join(format_size(size) for size in sizes)
        verdicts.append(Verdict(target, where, "; ".join(parts) or MISSING, met))
    return verdicts


def evaluate(results: Results, args: argparse.Namespace) -> list[Verdict]:
    """The performance targets of the issue, each met, missed or not measured."""
    small = [size for size in args.sizes if size <= 1024]
    large = [size for size in args.sizes if size == 64 * 1024]
    verdicts: list[Verdict] = []
    echo = (results, args)
    verdicts += _ratio_verdicts(
        *echo, f"small messages, ws://: server CPU ≤ 0.5{TIMES} websockets", "echo", "us", "websockets", 0.5,
        small, ["ws"],
    )  # fmt: skip
    verdicts += _ratio_verdicts(
        *echo,
        f"small messages, ws://: server CPU ≤ 1.3{TIMES} picows",
        "echo",
        "us",
        "picows",
        1.3,
        small,
        ["ws"],
    )
    verdicts += _ratio_verdicts(
        *echo, f"small messages, wss://: server CPU ≤ 0.6{TIMES} websockets", "echo", "us", "websockets", 0.6,
        small, ["wss"],
    )  # fmt: skip
    verdicts += _ratio_verdicts(
        *echo, f"64 KiB: server CPU ≤ 0.7{TIMES} websockets", "echo", "us", "websockets", 0.7, large,
        args.transports,
    )  # fmt: skip
    verdicts += _ratio_verdicts(
        *echo, f"64 KiB: server CPU ≤ 1.2{TIMES} picows", "echo", "us", "picows", 1.2, large, args.transports
    )
    verdicts += _ratio_verdicts(
        *echo, f"client CPU ≤ 0.5{TIMES} websockets' client", "client", "client_us", "websockets", 0.5,
        args.client_sizes, args.client_transports,
    )  # fmt: skip
    most = max(args.broadcast_clients)
    parts = []
    met: bool | None = None
    for loop in args.loops:
        mine = _median(results, "all_ms", section="broadcast", impl="wsskit", loop=loop, clients=most)
        theirs = _median(results, "all_ms", section="broadcast", impl="websockets", loop=loop, clients=most)
        if mine is None or theirs is None:
            continue
        ours = _find(results, section="broadcast", impl="wsskit", loop=loop, clients=most)
        peer = _find(results, section="broadcast", impl="websockets", loop=loop, clients=most)
        overlap = ""
        if ours is not None and peer is not None:
            a, b = ours.values("all_ms"), peer.values("all_ms")
            if a and b and max(a) >= min(b) and min(a) <= max(b):
                overlap = ", ranges overlap"
        parts.append(f"{loop} {mine:.1f} vs {theirs:.1f} ms ({mine / theirs:.2f}{TIMES}{overlap})")
        met = (met is not False) and mine < theirs
    verdicts.append(
        Verdict(
            f"broadcast to {most:,} clients faster than websockets' broadcast()",
            "ws://, 1 KiB",
            "; ".join(parts) or MISSING,
            met,
        )
    )
    parts = []
    met = None
    for loop in args.memory_loops:
        value = _median(
            results, "kib", section="memory", impl="wsskit", transport="wss", deflate=False, loop=loop
        )
        if value is None:
            continue
        parts.append(f"{loop} {value:,.1f} KiB")
        met = (met is not False) and value <= 64
    verdicts.append(
        Verdict(
            "idle wss:// connection without compression ≤ 64 KiB",
            f"{args.idle_connections:,} connections",
            "; ".join(parts) or MISSING,
            met,
        )
    )
    return verdicts


# -- the sections -------------------------------------------------------------------------


def _echo_section(results: Results, args: argparse.Namespace) -> list[str]:
    impls: list[str] = args.impls
    lines = [
        "## 1. Server CPU per round trip (echo, one connection)",
        "",
        f"The {args.driver} client sends a binary message and the next once the echo is back; server and "
        f"client share one CPU. Cells: **server CPU µs per round trip**, median (min{DASH}max); **rt/s**: "
        "round trips per second (median). `wsskit ÷ X`: ratio of the medians of server CPU "
        f"(below 1{TIMES}: wsskit spends less).",
    ]
    for transport in args.transports:
        for loop in args.loops:
            header = ["size"]
            for impl in impls:
                header += [f"{impl} µs", f"{impl} rt/s"]
            header += [f"wsskit ÷ {peer}" for peer in _peers(impls)]
            rows = []
            for size in args.sizes:
                row = [format_size(size)]
                match = {"section": "echo", "transport": transport, "loop": loop, "size": size}
                for impl in impls:
                    result = _find(results, impl=impl, **match)
                    row += [spread(result, "us"), plain(result, "rps", 0)]
                mine = _median(results, "us", impl="wsskit", **match)
                row += [ratio(mine, _median(results, "us", impl=peer, **match)) for peer in _peers(impls)]
                rows.append(row)
            lines += ["", f"### {transport}:// on {loop}", "", *table(header, rows)]
    return lines


def _client_section(results: Results, args: argparse.Namespace) -> list[str]:
    impls: list[str] = args.impls
    lines = [
        "## 2. Client CPU per round trip (each library's client, one connection)",
        "",
        "Each library's client (`await ws.send(m)`, then `await ws.recv()`; picows: its frame callback) "
        f"against one picows server on {args.client_server_loop}, both on one CPU. Cells: **client CPU µs "
        f"per round trip**, median (min{DASH}max); the loop is the client's. `wsskit ÷ X`: ratio of the "
        "medians of client CPU.",
    ]
    for transport in args.client_transports:
        for loop in args.loops:
            header = ["size"]
            for impl in impls:
                header += [f"{impl} µs", f"{impl} rt/s"]
            header += [f"wsskit ÷ {peer}" for peer in _peers(impls)]
            rows = []
            for size in args.client_sizes:
                match = {"section": "client", "transport": transport, "loop": loop, "size": size}
                row = [format_size(size)]
                for impl in impls:
                    result = _find(results, impl=impl, **match)
                    row += [spread(result, "client_us"), plain(result, "rps", 0)]
                mine = _median(results, "client_us", impl="wsskit", **match)
                row += [
                    ratio(mine, _median(results, "client_us", impl=peer, **match)) for peer in _peers(impls)
                ]
                rows.append(row)
            lines += ["", f"### {transport}:// client on {loop}", "", *table(header, rows)]
    return lines


def _throughput_section(results: Results, args: argparse.Namespace) -> list[str]:
    impls: list[str] = args.impls
    lines = [
        f"## 3. Throughput: {args.connections} connections, messages per second",
        "",
        "A picows load generator on the other CPU keeps one message in flight on each of "
        f"{args.connections} connections; {args.duration:g} s timed after a warm-up. Cells: **echoed "
        f"messages per second**, median (min{DASH}max), and the server's CPU use over the timed window "
        "(100 % = one CPU busy: the server is the bottleneck; well below: the load generator is). "
        f"`wsskit ÷ X`: ratio of messages per second (above 1{TIMES}: wsskit serves more).",
    ]
    header = ["transport", "loop", "size"]
    for impl in impls:
        header += [f"{impl} msg/s", f"{impl} CPU"]
    header += [f"wsskit ÷ {peer}" for peer in _peers(impls)]
    rows = []
    for transport in args.throughput_transports:
        for loop in args.loops:
            for size in args.throughput_sizes:
                match = {"section": "throughput", "transport": transport, "loop": loop, "size": size}
                row = [f"{transport}://", loop, format_size(size)]
                for impl in impls:
                    result = _find(results, impl=impl, **match)
                    util = result.median("server_util") if result is not None else None
                    row += [spread(result, "mps", 0), f"{util:.0%}" if util is not None else MISSING]
                mine = _median(results, "mps", impl="wsskit", **match)
                row += [ratio(mine, _median(results, "mps", impl=peer, **match)) for peer in _peers(impls)]
                rows.append(row)
    return [*lines, "", *table(header, rows, left=3)]


def _broadcast_section(results: Results, args: argparse.Namespace, meta: dict[str, str]) -> list[str]:
    impls = [impl for impl in args.impls if impl in args.broadcast_impls]
    kernel = user = 0
    for case, found in results.items():
        if case.section == "broadcast":
            kernel += sum(sample.get("kernel_stamps", 0) for sample in found.samples)
            user += sum(sample.get("user_stamps", 0) for sample in found.samples)
    stamps = (
        f" Arrival times: kernel timestamps for {kernel:,} reads, the reader's clock for {user:,} (no kernel"
        " timestamp on those)."
        if user
        else ""
    )
    lines = [
        "## 4. Broadcast: one 1 KiB message to every connected client",
        "",
        "ws://; the clients are plain sockets in other processes on the other CPU; "
        f"{args.broadcasts} timed broadcasts per run after 2 untimed ones, the median taken per run. "
        "**all**: from the call until the message reached the last client (kernel receive timestamps), "
        f"median (min{DASH}max) over the runs; **p50**: until it reached half of them; **CPU/client**: "
        "server CPU µs per recipient. `wsskit ÷ X`: ratio of the medians of **all** "
        f"(below 1{TIMES}: wsskit is faster). How each server broadcasts: {meta['broadcast']}.{stamps}",
    ]
    header = ["loop", "clients"]
    for impl in impls:
        header += [f"{impl} all ms", f"{impl} p50 ms", f"{impl} CPU/client"]
    peers = [impl for impl in impls if impl != "wsskit"] if "wsskit" in impls else []
    header += [f"wsskit ÷ {peer}" for peer in peers]
    rows = []
    for loop in args.loops:
        for clients in args.broadcast_clients:
            match = {"section": "broadcast", "loop": loop, "clients": clients}
            row = [loop, f"{clients:,}"]
            for impl in impls:
                result = _find(results, impl=impl, **match)
                row += [spread(result, "all_ms"), plain(result, "p50_ms"), plain(result, "cpu_us", 1, " µs")]
            mine = _median(results, "all_ms", impl="wsskit", **match)
            row += [ratio(mine, _median(results, "all_ms", impl=peer, **match)) for peer in peers]
            rows.append(row)
    return [*lines, "", *table(header, rows, left=2)]


def _memory_section(results: Results, args: argparse.Namespace) -> list[str]:
    impls: list[str] = args.impls
    lines = [
        "## 5. Memory per idle connection",
        "",
        f"Growth of the server's RSS over {args.idle_connections:,} connections opened after 10 warm ones "
        f"(handshake done, idle, keepalive off), divided by {args.idle_connections:,}. Cells: **KiB per "
        f"connection**, median (min{DASH}max). With deflate the client offers permessage-deflate and each "
        f"server keeps its defaults. `wsskit ÷ X`: ratio of the medians (below 1{TIMES}: wsskit needs less).",
    ]
    header = ["loop", "connection", *impls, *[f"wsskit ÷ {peer}" for peer in _peers(impls)]]
    rows = []
    for loop in args.memory_loops:
        for transport, deflate in (("ws", False), ("wss", False), ("wss", True)):
            match = {"section": "memory", "loop": loop, "transport": transport, "deflate": deflate}
            row = [loop, f"{transport}://" + (" + deflate" if deflate else "")]
            for impl in impls:
                supported = not deflate or impl != "picows"
                row.append(spread(_find(results, impl=impl, **match), "kib") if supported else NA)
            mine = _median(results, "kib", impl="wsskit", **match)
            row += [ratio(mine, _median(results, "kib", impl=peer, **match)) for peer in _peers(impls)]
            rows.append(row)
    return [*lines, "", *table(header, rows, left=2)]


def _deflate_section(results: Results, args: argparse.Namespace, meta: dict[str, str]) -> list[str]:
    impls: list[str] = args.impls
    lines = [
        "## 6. permessage-deflate: 64 KiB of JSON-like text",
        "",
        "The raw client sends one 64 KiB text message (JSON-like, about 5.5:1 compressible) compressed "
        "once, and inflates every echo; server and client share one CPU. Cells: **server CPU µs per round "
        f"trip** with compression on, median (min{DASH}max); **off**: the same text without compression; "
        "**wire**: bytes of the compressed echo. `wsskit ÷ X`: ratio of the medians with compression on. "
        f"picows has no permessage-deflate. Negotiated: {meta['deflate']}.",
    ]
    header = ["transport", "loop"]
    for impl in impls:
        header += [f"{impl} on µs", f"{impl} off µs", f"{impl} wire"]
    header += [f"wsskit ÷ {peer}" for peer in _peers(impls) if peer != "picows"]
    rows = []
    for transport in args.deflate_transports:
        for loop in args.loops:
            row = [f"{transport}://", loop]
            match = {"section": "deflate", "transport": transport, "loop": loop}
            for impl in impls:
                on = _find(results, impl=impl, deflate=True, **match)
                off = _find(results, impl=impl, deflate=False, **match)
                supported = impl != "picows"
                row += [
                    spread(on, "us") if supported else NA,
                    plain(off, "us"),
                    plain(on, "wire", 0, " B") if supported else NA,
                ]
            mine = _median(results, "us", impl="wsskit", deflate=True, **match)
            for peer in _peers(impls):
                if peer != "picows":
                    row.append(ratio(mine, _median(results, "us", impl=peer, deflate=True, **match)))
            rows.append(row)
    return [*lines, "", *table(header, rows, left=2)]


# -- headline -------------------------------------------------------------------------------


def headline(results: Results, args: argparse.Namespace) -> list[str]:
    """A compact table for the README: one line per measurement, the libraries side by side."""
    impls: list[str] = args.impls
    loop = "uvloop" if "uvloop" in args.loops else args.loops[0]
    rows: list[list[str]] = []

    def add(label: str, cell: Callable[[str], str]) -> None:
        rows.append([label, *(cell(impl) for impl in impls)])

    def echo(size: int, transport: str) -> Callable[[str], str]:
        return lambda impl: plain(
            _find(results, section="echo", impl=impl, transport=transport, loop=loop, size=size),
            "us",
            1,
            " µs",
        )

    if "echo" in args.sections:
        small, large = min(args.sizes), max(args.sizes)
        for transport in args.transports:
            add(f"server CPU per round trip, {format_size(small)}, {transport}://", echo(small, transport))
        if 64 * 1024 in args.sizes:
            add("server CPU per round trip, 64 KiB, ws://", echo(64 * 1024, "ws"))
        if large != 64 * 1024 and large != small:
            add(f"server CPU per round trip, {format_size(large)}, ws://", echo(large, "ws"))
    if "client" in args.sections:
        size = min(args.client_sizes)
        add(
            f"client CPU per round trip, {format_size(size)}, ws://",
            lambda impl: plain(
                _find(results, section="client", impl=impl, transport="ws", loop=loop, size=size),
                "client_us",
                1,
                " µs",
            ),
        )
    if "throughput" in args.sections:
        size = args.throughput_sizes[0]
        add(
            f"messages/s, {args.connections} connections, {format_size(size)}, ws://",
            lambda impl: plain(
                _find(results, section="throughput", impl=impl, transport="ws", loop=loop, size=size),
                "mps",
                0,
            ),
        )
    if "broadcast" in args.sections:
        most = max(args.broadcast_clients)
        add(
            f"broadcast 1 KiB to {most:,} clients (all reached)",
            lambda impl: (
                NA
                if impl == "aiohttp"
                else MISSING
                if impl not in args.broadcast_impls
                else plain(
                    _find(results, section="broadcast", impl=impl, loop=loop, clients=most),
                    "all_ms",
                    1,
                    " ms",
                )
            ),
        )
    if "memory" in args.sections:
        memory_loop = loop if loop in args.memory_loops else args.memory_loops[0]
        rows_of = [("ws", memory_loop), ("wss", memory_loop)]
        rows_of += [("wss", other) for other in args.memory_loops if other != memory_loop]

        def memory(transport: str, on: str) -> Callable[[str], str]:
            return lambda impl: plain(
                _find(results, section="memory", impl=impl, transport=transport, loop=on, deflate=False),
                "kib",
                1,
                " KiB",
            )

        for transport, on in rows_of:
            suffix = "" if on == loop else f" ({on})"
            add(f"memory per idle {transport}:// connection{suffix}", memory(transport, on))
    if "deflate" in args.sections:
        transport = args.deflate_transports[0]
        add(
            f"server CPU per round trip, 64 KiB JSON, permessage-deflate, {transport}://",
            lambda impl: (
                NA
                if impl == "picows"
                else plain(
                    _find(
                        results, section="deflate", impl=impl, transport=transport, loop=loop, deflate=True
                    ),
                    "us",
                    0,
                    " µs",
                )
            ),
        )
    memory_note = ""
    quick = " (a --quick run: a small grid, for development only)" if args.quick else ""
    return [
        f"Median of {_runs(args.repeat)}{quick}, servers on {loop}{memory_note}; lower is better except "
        "messages/s.",
        "Full tables, spreads and the method: [bench/results.md](bench/results.md).",
        "",
        *table([f"{loop}", *impls], rows),
    ]


# -- the whole report --------------------------------------------------------------------------


def render(results: Results, args: argparse.Namespace, meta: dict[str, str]) -> str:
    verdicts = evaluate(results, args)
    lines = [
        "# wsskit benchmark: side by side with websockets, aiohttp and picows",
        "",
        "Generated by `make bench` (`bench/run.py`); how to read it: [README.md](README.md).",
        "",
        "## Headline",
        "",
        "(For the project README.)",
        "",
        *headline(results, args),
        "",
        "## Targets (issue 5)",
        "",
        "Ratios are wsskit's median divided by the peer's; where several sizes count, the worst one is "
        "shown.",
        "",
        *table(
            ["target", "where", "measured", "verdict"],
            [[v.target, v.where, v.measured, v.word] for v in verdicts],
            left=3,
        ),
        "",
        "## Setup",
        "",
        f"- date: {meta['date']}; the run took {meta['duration']}; {meta['mode']}",
        f"- machine: {meta['machine']}",
        f"- {meta['python']}",
        f"- versions: {meta['versions']}",
        f"- {meta['compiled']}",
        f"- {meta['cpus']}; fixed echo client: {meta['client']}",
        f"- {_runs(args.repeat, 'repetition')}, interleaved (repetitions outermost, implementations in "
        "rotating order), fresh processes for every measurement; compression off except in section 6, "
        "keepalive pings off, a 2 MiB message limit and a listen backlog of 1024 on every server",
        f"- load average before / after: {meta['load_before']} / {meta['load_after']}",
        f"- TLS negotiated: {meta['tls']}",
        f"- open files (hard limit, each process raises its soft limit to it): {meta['nofile']}",
    ]
    sections = {
        "echo": lambda: _echo_section(results, args),
        "client": lambda: _client_section(results, args),
        "throughput": lambda: _throughput_section(results, args),
        "broadcast": lambda: _broadcast_section(results, args, meta),
        "memory": lambda: _memory_section(results, args),
        "deflate": lambda: _deflate_section(results, args, meta),
    }
    for name in args.sections:
        lines += ["", *sections[name]()]
    failures = [(case, why) for case, result in results.items() for why in result.failures]
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {case.label()}: {why}" for case, why in failures]
    lines.append("")
    return "\n".join(lines)


# -- the chart -----------------------------------------------------------------------------------


def chart(results: Results, args: argparse.Namespace, path: Path) -> str | None:
    """Draw results.png (matplotlib, headless); return why not if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed: no chart"
    impls: list[str] = args.impls
    loop = "uvloop" if "uvloop" in args.loops else args.loops[0]
    colors = {"wsskit": "#d62728", "websockets": "#1f77b4", "aiohttp": "#2ca02c", "picows": "#7f7f7f"}

    panels: list[tuple[str, str, list[tuple[str, dict[str, Any]]], str, bool]] = []
    if "echo" in args.sections:
        for transport in args.transports:
            groups = [
                (format_size(s), {"section": "echo", "transport": transport, "loop": loop, "size": s})
                for s in args.sizes
            ]
            panels.append((f"server CPU per round trip, {transport}://, {loop}", "µs", groups, "us", True))
    if "client" in args.sections:
        transport = args.client_transports[0]
        groups = [
            (format_size(s), {"section": "client", "transport": transport, "loop": loop, "size": s})
            for s in args.client_sizes
        ]
        panels.append((f"client CPU per round trip, {transport}://, {loop}", "µs", groups, "client_us", True))
    if "throughput" in args.sections:
        groups = [
            (f"{t}:// {format_size(s)}", {"section": "throughput", "transport": t, "loop": loop, "size": s})
            for t in args.throughput_transports
            for s in args.throughput_sizes
        ]
        panels.append(
            (
                f"messages/s, {args.connections} connections, {loop} (higher is better)",
                "msg/s",
                groups,
                "mps",
                False,
            )
        )
    if "broadcast" in args.sections:
        groups = [
            (f"{c:,} clients", {"section": "broadcast", "loop": loop, "clients": c})
            for c in args.broadcast_clients
        ]
        panels.append((f"broadcast 1 KiB, time until all reached, {loop}", "ms", groups, "all_ms", False))
    if "memory" in args.sections:
        memory_loop = args.memory_loops[0]
        groups = [
            (name, {"section": "memory", "loop": memory_loop, "transport": t, "deflate": d})
            for name, t, d in (
                ("ws://", "ws", False),
                ("wss://", "wss", False),
                ("wss:// + deflate", "wss", True),
            )
        ]
        panels.append((f"memory per idle connection, {memory_loop}", "KiB", groups, "kib", False))
    if "deflate" in args.sections:
        groups = [
            (
                f"{t}:// {lp} {'on' if d else 'off'}",
                {"section": "deflate", "transport": t, "loop": lp, "deflate": d},
            )
            for t in args.deflate_transports
            for lp in args.loops
            for d in (True, False)
        ]
        panels.append(("64 KiB JSON echo, server CPU, deflate on/off", "µs", groups, "us", False))
    if not panels:
        return "nothing to draw"
    columns = 4 if len(panels) > 6 else min(3, len(panels))
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for axis, (title, unit, groups, metric, log) in zip(axes.flat, panels, strict=False):
        # Only the libraries measured in this panel get a slot in each group.
        drawn = [
            impl
            for impl in impls
            if any(
                (found := _find(results, impl=impl, **match)) and found.values(metric) for _, match in groups
            )
        ]
        width = 0.8 / max(len(drawn), 1)
        for index, impl in enumerate(drawn):
            xs, heights, low, high = [], [], [], []
            for position, (_, match) in enumerate(groups):
                result = _find(results, impl=impl, **match)
                values = result.values(metric) if result is not None else []
                if not values:
                    continue
                middle = statistics.median(values)
                xs.append(position + (index - (len(drawn) - 1) / 2) * width)
                heights.append(middle)
                low.append(middle - min(values))
                high.append(max(values) - middle)
            if xs:
                axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=impl, color=colors.get(impl))
        axis.set_xticks(range(len(groups)))
        axis.set_xticklabels([name for name, _ in groups], fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(unit)
        if log:
            axis.set_yscale("log")
            plain_numbers = ticker.FuncFormatter(lambda value, _: f"{value:g}")
            axis.yaxis.set_major_formatter(plain_numbers)
            axis.yaxis.set_minor_formatter(plain_numbers)
            axis.tick_params(axis="y", which="minor", labelsize=7)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    quick = ", --quick run" if args.quick else ""
    figure.suptitle(
        f"wsskit benchmark: medians of {_runs(args.repeat)}{quick}, bars min{DASH}max", fontsize=11
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
