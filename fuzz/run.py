#!/usr/bin/env python3
"""Run the fuzz targets of fuzz/targets.py for a set time.

    python fuzz/run.py --seconds 60                  # every target, 60 s in all
    python fuzz/run.py --seconds 30 --target frames  # one target (repeatable)
    python fuzz/run.py --reproduce fuzz/crashes/frames-0123abcd
    python fuzz/run.py --write-seeds                 # rewrite fuzz/corpus/ from fuzz/seeds.py

The time is split evenly across the targets. With atheris installed each
target runs under libFuzzer (coverage-guided) in a subprocess; otherwise, or
with ``--engine hypothesis``, Hypothesis mutates the seed corpus for the same
time. A crashing input is written to fuzz/crashes/<target>-<sha1>, the
traceback printed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import re
import subprocess
import sys
import time
import traceback
import types
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
CRASHES = FUZZ / "crashes"
# The corpus libFuzzer grows, kept between runs (ignored by git).
WORK = FUZZ / ".work"
DICTIONARY = FUZZ / "wsskit.dict"

# Kept in step with TARGETS in fuzz/targets.py (checked when it is imported):
# the parent process must not import wsskit before atheris instruments it.
TARGET_NAMES = (
    "http_request",
    "http_response",
    "server_handshake",
    "client_handshake",
    "frames",
    "frame_roundtrip",
    "inflate",
    "deflate_roundtrip",
    "server_connection",
    "client_connection",
    "proxy_header",
)
_CHILD_FLAG = "--atheris-child"
# Targets whose limits take a few KiB in one input (a head and frames in one
# chunk) to reach: libFuzzer tries inputs up to -max_len from the start
# instead of growing them slowly, at the cost of slower executions.
_LONG_INPUTS = frozenset({"server_connection", "client_connection"})


@dataclass
class Result:
    """How one target's run went."""

    target: str
    engine: str
    seconds: float
    executions: int
    crash: Path | None = None
    detail: str = ""


def _import(name: str) -> Any:
    """Import ``fuzz.<name>`` (the repository root need not be on the path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"fuzz.{name}")


def _targets() -> dict[str, Callable[[bytes], None]]:
    module = _import("targets")
    targets: dict[str, Callable[[bytes], None]] = module.TARGETS
    assert tuple(targets) == TARGET_NAMES, "TARGET_NAMES is out of step with fuzz/targets.py"
    return targets


def _seeds(target: str) -> list[bytes]:
    """The seed corpus of ``target`` and whatever libFuzzer added to it."""
    inputs: list[bytes] = []
    for folder in (CORPUS / target, WORK / target):
        if folder.is_dir():
            inputs.extend(path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file())
    return inputs


def _save_crash(target: str, data: bytes) -> Path:
    CRASHES.mkdir(exist_ok=True)
    path = CRASHES / f"{target}-{hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]}"
    path.write_bytes(data)
    return path


# -- Hypothesis -------------------------------------------------------------------


def run_hypothesis(target: str, seconds: float) -> Result:
    """Run ``target`` on Hypothesis-made inputs until ``seconds`` have passed or it crashes."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.strategies import SearchStrategy

    fuzz_inputs: Callable[[Sequence[bytes]], SearchStrategy[bytes]] = _import("strategies").fuzz_inputs
    function = _targets()[target]
    seeds = _seeds(target)
    started = time.monotonic()
    deadline = started + seconds
    executions = 0
    last = b""
    failing = False

    def run_one(data: bytes) -> None:
        nonlocal executions, last, failing
        # Past the deadline the rest of a batch is skipped, unless Hypothesis
        # is shrinking a failure, which must keep failing.
        if not failing and time.monotonic() > deadline:
            return
        executions += 1
        last = data
        try:
            function(data)
        except Exception:
            failing = True
            raise

    batch: Callable[[], None] = settings(
        max_examples=2000,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )(given(fuzz_inputs(seeds))(run_one))
    try:
        for seed in seeds:
            run_one(seed)
        while time.monotonic() < deadline:
            batch()
    except Exception as exc:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        crash = _save_crash(target, last)
        return Result(target, "hypothesis", time.monotonic() - started, executions, crash, detail)
    return Result(target, "hypothesis", time.monotonic() - started, executions)


# -- atheris ------------------------------------------------------------------------


def run_atheris(target: str, seconds: float, *, max_len: int | None) -> Result:
    """Run ``target`` under libFuzzer in a subprocess for ``seconds`` (at least 1)."""
    work = WORK / target
    work.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(exist_ok=True)
    args = [
        str(work),  # new inputs go to the first folder
        str(CORPUS / target),
        f"-max_total_time={max(1, round(seconds))}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={CRASHES}/{target}-",
        f"-dict={DICTIONARY}",
        "-print_final_stats=1",
    ]
    if target in _LONG_INPUTS:
        args.append("-len_control=0")
    if max_len is not None:
        args.append(f"-max_len={max_len}")
    command = [sys.executable, str(Path(__file__).resolve()), _CHILD_FLAG, target, "--", *args]
    log = WORK / f"{target}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        # The command is this script under this interpreter, no shell involved.
        status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    elapsed = time.monotonic() - started
    text = log.read_text("utf-8", "replace")
    executions = _last_int(r"stat::number_of_executed_units:\s*(\d+)", text)
    if executions is None:
        executions = _last_int(r"#(\d+)\s", text) or 0
    if status.returncode == 0:
        return Result(target, "atheris", elapsed, executions)
    written = re.findall(r"Test unit written to (\S+)", text)
    crash = Path(written[-1]) if written else None
    # The Python traceback up to libFuzzer's verdict, else the end of the log.
    found = re.search(r"=== Uncaught Python exception.*?^==\d+== ERROR: .*?$", text, re.S | re.M)
    detail = found.group(0) if found else text[-4000:].strip()
    return Result(target, "atheris", elapsed, executions, crash, f"{detail}\n(full log: {log})")


def _last_int(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def _atheris_child(argv: Sequence[str]) -> None:
    """In the subprocess: instrument wsskit, then hand the target to libFuzzer."""
    target, separator, *libfuzzer_args = argv
    assert separator == "--"
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports(include=["wsskit"]):
        module = _import("targets")
    # Request.path and .query run the peer's target through urllib.parse,
    # which was imported (uninstrumented) before us: instrument it in place.
    for value in vars(urllib.parse).values():
        if isinstance(value, types.FunctionType) and value.__module__ == "urllib.parse":
            atheris.instrument_func(value)
    atheris.Setup([sys.argv[0], *libfuzzer_args], module.TARGETS[target])
    atheris.Fuzz()


# -- the command ----------------------------------------------------------------------


def _reproduce(path: Path, target: str | None) -> int:
    if target is None:
        target = next((name for name in TARGET_NAMES if path.name.startswith(name + "-")), None)
        if target is None:
            print(f"cannot tell the target from {path.name}; pass --target", file=sys.stderr)
            return 2
    data = path.read_bytes()
    print(f"{target} on {path} ({len(data)} bytes): {data!r}", flush=True)
    try:
        _targets()[target](data)
    except Exception:
        traceback.print_exc()
        return 1
    print("no crash")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the targets, print a summary; return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="total time, split across targets")
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="run only this target")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--max-len", type=int, default=None, help="libFuzzer's -max_len (atheris only)")
    parser.add_argument("--reproduce", type=Path, metavar="FILE", help="run one saved input, show its error")
    parser.add_argument("--write-seeds", action="store_true", help="rewrite fuzz/corpus/ from fuzz/seeds.py")
    options = parser.parse_args(argv)

    if options.reproduce is not None:
        return _reproduce(options.reproduce, options.target[0] if options.target else None)
    if options.write_seeds:
        print(f"wrote {_import('seeds').write_corpus()} seeds under {CORPUS}")
        return 0

    engine = options.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") is not None else "hypothesis"
    elif engine == "atheris" and importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: pip install atheris, or use --engine hypothesis", file=sys.stderr)
        return 2
    names = options.target or list(TARGET_NAMES)
    share = options.seconds / len(names)
    print(f"fuzzing {len(names)} target(s) with {engine}, {share:.1f} s each", flush=True)

    results = []
    for name in names:
        if engine == "atheris":
            result = run_atheris(name, share, max_len=options.max_len)
        else:
            result = run_hypothesis(name, share)
        results.append(result)
        rate = result.executions / result.seconds if result.seconds else 0.0
        status = "ok" if result.crash is None and not result.detail else f"CRASH {result.crash}"
        print(f"  {name:<18} {result.executions:>9} runs {rate:>9.0f}/s  {status}", flush=True)
        if result.detail:
            print(result.detail, flush=True)
    crashed = [result for result in results if result.crash is not None or result.detail]
    if crashed:
        print(f"{len(crashed)} target(s) crashed: {', '.join(result.target for result in crashed)}")
        print("reproduce with: python fuzz/run.py --reproduce <file>")
        return 1
    print("no crashes")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == _CHILD_FLAG:
        _atheris_child(sys.argv[2:])
    else:
        sys.exit(main())
