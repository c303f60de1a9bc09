"""The failover's result per step, and the markdown table ``make failover`` prints."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .tally import Tally

__all__ = ["StepResult", "percentile", "markdown_table"]


@dataclass
class StepResult:
    """One step: what was published (acknowledged) and what the subscribers made of it."""

    name: str
    #: Whether a gap the clients were told about (``recovered: false``) is allowed (the Redis restart).
    loss_may_be_told: bool
    published: int
    tally: Tally
    publish_failures: dict[str, int]
    seconds: float

    @property
    def lost(self) -> int:
        """Missing deliveries that count as lost: silent ones; in (a)/(b) told ones too."""
        return self.tally.silent + (0 if self.loss_may_be_told else self.tally.told)

    @property
    def passed(self) -> bool:
        """(a)/(b): nothing lost, duplicated or out of order; (c): no silent gap."""
        if self.loss_may_be_told:
            return self.tally.silent == 0
        return self.lost == 0 and self.tally.duplicated == 0 and self.tally.out_of_order == 0


def percentile(values: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def markdown_table(results: list[StepResult]) -> str:
    """The per-step table, in markdown."""
    lines = [
        "| step | published | delivered / expected | lost | told `recovered: false` | duplicated "
        "| out of order | reconnects | reconnect p50 | reconnect p99 | clients recovered / told | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.tally
        lines.append(
            f"| {r.name} | {r.published} | {t.delivered} / {t.expected} | {r.lost} | {t.told} "
            f"| {t.duplicated} | {t.out_of_order} | {len(t.reconnects)} "
            f"| {_seconds(percentile(t.reconnects, 0.5))} | {_seconds(percentile(t.reconnects, 0.99))} "
            f"| {t.clients_recovered} / {t.clients_told} | {'ok' if r.passed else '**FAILED**'} |"
        )
    return "\n".join(lines)
