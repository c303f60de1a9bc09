"""Fixtures of the bad-input campaign: one campaign server process for the whole session.

Also reports the campaign's case counts per group after collection (one
line; ``python -m pytest tests/security --collect-only -q`` shows it, and
``python tests/security/count_cases.py`` prints one line per group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.security.campaign import CampaignServer, problems, start_campaign_server

GROUPS = ("handshake", "framing", "payload", "close", "resources", "tls", "auth")
_PREFIX = "test_campaign_"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "campaign_control: a valid input among the campaign's hostile ones (a boundary or a control)",
    )


def campaign_counts(items: Sequence[pytest.Item]) -> dict[str, tuple[int, int]]:
    """(hostile cases, controls) per campaign group among ``items``."""
    hostile: Counter[str] = Counter()
    controls: Counter[str] = Counter()
    for item in items:
        stem = Path(item.path).stem
        if not stem.startswith(_PREFIX):
            continue
        group = stem[len(_PREFIX) :]
        if item.get_closest_marker("campaign_control") is None:
            hostile[group] += 1
        else:
            controls[group] += 1
    return {group: (hostile[group], controls[group]) for group in GROUPS if hostile[group] or controls[group]}


def pytest_report_collectionfinish(config: pytest.Config, items: Sequence[pytest.Item]) -> list[str]:
    counts = campaign_counts(items)
    if not counts:
        return []
    total = sum(hostile for hostile, _ in counts.values())
    groups = ", ".join(f"{group} {hostile} (+{controls})" for group, (hostile, controls) in counts.items())
    return [f"bad-input campaign: {total} hostile cases (+controls): {groups}"]


@pytest.fixture(scope="session")
def campaign() -> Iterator[CampaignServer]:
    """The running ``campaign_server.py``; stopped with SIGTERM at the end, which must exit 0."""
    server = start_campaign_server()
    try:
        yield server
    finally:
        status = server.stop()
    assert status == 0, "\n".join(server.log.lines[-50:])
    assert problems(server.log.lines) == []
