"""Count what one subscriber received against what was published (acknowledged) in a step.

A subscriber keeps a *timeline* per client: the sequence numbers of the
publications it received, in arrival order, and ``None`` where the client was
told ``recovered: false`` (the server could not fill a gap). The publisher
numbers each channel's publications 1, 2, 3...; a step's expected range is
``[lo, hi]``, the sequence numbers acknowledged during the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

__all__ = ["Tally", "tally_timeline"]


@dataclass
class Tally:
    """Counts over one or more clients (``+`` adds them up)."""

    expected: int = 0
    delivered: int = 0
    #: Missing, and the client was never told: a silent gap.
    silent: int = 0
    #: Missing, and the client was told ``recovered: false`` about it.
    told: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    #: Clients with at least one silent gap / missing nothing.
    clients_silent: int = 0
    clients_complete: int = 0
    #: Clients that resumed during the step: all with ``recovered: true``, or told ``recovered: false``.
    clients_recovered: int = 0
    clients_told: int = 0
    reconnects: list[float] = field(default_factory=list)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.expected + other.expected,
            self.delivered + other.delivered,
            self.silent + other.silent,
            self.told + other.told,
            self.duplicated + other.duplicated,
            self.out_of_order + other.out_of_order,
            self.clients_silent + other.clients_silent,
            self.clients_complete + other.clients_complete,
            self.clients_recovered + other.clients_recovered,
            self.clients_told + other.clients_told,
            self.reconnects + other.reconnects,
        )

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Tally:
        """Raises :class:`TypeError` for unknown keys."""
        return cls(**data)  # type: ignore[arg-type]


def tally_timeline(timeline: Sequence[int | None], lo: int, hi: int) -> Tally:
    """Count one client's ``timeline`` against the expected range ``[lo, hi]``.

    Duplicates are repeats of a sequence number; out of order is a number
    smaller than the one received just before it (both within the range).
    A marker (``None``) covers the numbers between the last one received
    before it and the first one received after it (to ``hi`` when none came).
    """
    told: set[int] = set()
    for k, item in enumerate(timeline):
        if item is None:
            before = max((x for x in timeline[:k] if x is not None), default=0)
            after = next((x for x in timeline[k + 1 :] if x is not None), hi + 1)
            told.update(range(before + 1, after))
    received = [x for x in timeline if x is not None and lo <= x <= hi]
    unique = set(received)
    missing = set(range(lo, hi + 1)) - unique
    silent = missing - told
    result = Tally(
        expected=max(0, hi - lo + 1),
        delivered=len(unique),
        silent=len(silent),
        told=len(missing & told),
        duplicated=len(received) - len(unique),
        out_of_order=sum(1 for a, b in pairwise(received) if b < a),
    )
    result.clients_silent = int(bool(silent))
    result.clients_complete = int(not missing)
    return result
