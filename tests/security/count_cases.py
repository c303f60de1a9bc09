"""Print the bad-input campaign's case counts, one ``group: N`` line per group.

``python tests/security/count_cases.py`` (from the project root, with the
project's environment) collects ``tests/security`` without running anything
or starting the campaign server. N counts the hostile inputs; valid inputs
kept beside them as boundaries or controls are shown apart.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class _Collector:
    def __init__(self) -> None:
        self.items: list[pytest.Item] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = list(session.items)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.security.conftest import campaign_counts

    collector = _Collector()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = pytest.main(
            [str(ROOT / "tests" / "security"), "--collect-only", "-qq", "-p", "no:cacheprovider"],
            plugins=[collector],
        )
    if status != 0:
        sys.stdout.write(output.getvalue())
        return int(status)
    counts = campaign_counts(collector.items)
    for group, (hostile, controls) in counts.items():
        print(f"{group}: {hostile}" + (f" (+{controls} controls)" if controls else ""))
    print(f"total: {sum(hostile for hostile, _ in counts.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
