"""Where a wsskit echo server spends its time per round trip: cProfile, one table.

    bench/.venv/bin/python bench/profile.py --size 16 --round-trips 20000
    bench/.venv/bin/python bench/profile.py --src /path/to/old/checkout/src   # profile another tree
    bench/.venv/bin/python bench/profile.py --transport wss --loop uvloop       # over TLS

It starts ``servers.py --impl wsskit`` under cProfile (asyncio loop by
default), drives it with the raw client of ``client.py`` (sequential round
trips, as in the benchmark's echo section), ends the server by closing its
stdin so the profile is written, and prints the functions that took the most
CPU time of their own, in microseconds per round trip (warm-up round trips
included, so the divisor is every round trip the server answered).

cProfile adds a cost to every Python call, so absolute figures are inflated
(more so for code made of many small calls); compare shares, and compare two
trees profiled the same way. Timings come from ``make bench``, not from here.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


_PROFILED = """
import cProfile, runpy, sys, time
out, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
sys.path.insert(0, script.rsplit("/", 1)[0])
profiler = cProfile.Profile(time.process_time)
profiler.enable()
try:
    runpy.run_path(script, run_name="__main__")
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""


def _start_server(
    args: argparse.Namespace, profile: Path, env: dict[str, str], tls: list[str]
) -> tuple[subprocess.Popen[str], int]:
    # cProfile's default clock is the wall clock, which would count the
    # time the server waits in epoll for the client: profile CPU time.
    command = [
        sys.executable,
        "-c",
        _PROFILED,
        str(profile),
        str(HERE / "servers.py"),
        "--impl",
        "wsskit",
        "--loop",
        args.loop,
        "--lifetime",
        "600",
        "--transport",
        args.transport,
        *tls,
    ]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("PORT "):
            return server, int(line.split()[1])
    raise RuntimeError("the server exited before listening")


def _rows(profile: Path, round_trips: int, top: int) -> list[tuple[float, float, int, str]]:
    stats = pstats.Stats(str(profile))
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{line}({name})" if line else name
        rows.append((tottime * 1e6 / round_trips, cumtime * 1e6 / round_trips, calls, where))
    rows.sort(reverse=True)
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--round-trips", type=int, default=20000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--transport", choices=("ws", "wss"), default="ws", help="wss: TLS with throwaway dev certificates"
    )
    parser.add_argument(
        "--src", type=Path, help="the wsskit source tree to profile (default: the installed one)"
    )
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.src.resolve()), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    warmup = 200
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "server.prof"
        server_tls: list[str] = []
        client_tls: list[str] = []
        if args.transport == "wss":
            from wsskit.certs import ensure_dev_certificates

            certs, _ = ensure_dev_certificates(Path(tmp) / "certs")
            server_tls = [f"--cert={certs.cert}", f"--key={certs.key}"]
            client_tls = [f"--cafile={certs.ca_cert}"]
        server, port = _start_server(args, profile, env, server_tls)
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "client.py"),
                    "--driver",
                    "raw",
                    "--url",
                    f"{args.transport}://127.0.0.1:{port}/",
                    "--server-pid",
                    str(server.pid),
                    "--size",
                    str(args.size),
                    "--round-trips",
                    str(args.round_trips),
                    "--warmup",
                    str(warmup),
                    *client_tls,
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)
        measured = json.loads(result.stdout)
        # Every round trip the server answered: the first check, the large
        # warm-up messages, the warm-up at --size and the timed ones.
        total = 1 + 4 + warmup + args.round_trips
        rows = _rows(profile, total, args.top)
        whole = pstats.Stats(str(profile)).total_tt * 1e6 / total  # type: ignore[attr-defined]
    where = f"{args.transport}://, {args.loop}, {args.size} B"
    print(f"wsskit echo server, {where}, {total} round trips under cProfile")
    print(f"profiled CPU time per round trip: {whole:.1f} us (inflated by the profiler; see make bench)")
    print(f"wall time of the timed round trips: {measured['wall_s'] * 1e6 / args.round_trips:.1f} us each")
    print()
    print("| own us/rt | cumulative us/rt | calls | function |")
    print("|---:|---:|---:|---|")
    for own, cumulative, calls, where in rows:
        print(f"| {own:.2f} | {cumulative:.2f} | {calls} | `{where}` |")


if __name__ == "__main__":
    main()
