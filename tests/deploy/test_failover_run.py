"""deploy/failover: a small run of the whole scenario (the full one is ``make failover``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_failover_run_loses_nothing() -> None:
    require("haproxy")
    require("redis-server")
    run = subprocess.run(
        [
            sys.executable, "-m", "deploy.failover",
            "--clients", "20", "--channels", "2", "--rate", "40",
            "--processes", "1", "--warmup", "1", "--settle", "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    rows = [line for line in run.stdout.splitlines() if line.startswith("| (")]
    assert [row.split("|")[1].strip()[:3] for row in rows] == ["(a)", "(b)", "(c)"], report
    assert all(row.rstrip().endswith("| ok |") for row in rows), report
