"""deploy/failover: the counting that decides whether a step passed, and the table's verdicts."""

from __future__ import annotations

from deploy.failover.report import StepResult, markdown_table, percentile
from deploy.failover.tally import Tally, tally_timeline


def test_a_complete_timeline_counts_nothing_missing() -> None:
    tally = tally_timeline([1, 2, 3, 4, 5], 2, 4)
    assert (tally.expected, tally.delivered, tally.silent, tally.told) == (3, 3, 0, 0)
    assert (tally.duplicated, tally.out_of_order, tally.clients_complete) == (0, 0, 1)


def test_a_gap_without_a_notice_is_silent() -> None:
    tally = tally_timeline([1, 2, 5, 6], 1, 6)
    assert (tally.silent, tally.told, tally.clients_silent) == (2, 0, 1)


def test_a_gap_the_client_was_told_about_is_not_silent() -> None:
    # recovered: false arrived between 2 and 5: 3 and 4 are covered.
    tally = tally_timeline([1, 2, None, 5, 6], 1, 6)
    assert (tally.silent, tally.told, tally.clients_silent) == (0, 2, 0)


def test_a_notice_covers_only_its_own_gap() -> None:
    tally = tally_timeline([1, None, 3, 5], 1, 5)
    assert (tally.told, tally.silent) == (1, 1)


def test_a_notice_at_the_end_covers_the_tail() -> None:
    tally = tally_timeline([1, 2, None], 1, 4)
    assert (tally.told, tally.silent) == (2, 0)


def test_duplicates_and_reordering_are_counted() -> None:
    tally = tally_timeline([1, 2, 2, 4, 3, 5], 1, 5)
    assert (tally.duplicated, tally.out_of_order, tally.silent) == (1, 1, 0)


def test_numbers_outside_the_range_are_ignored() -> None:
    tally = tally_timeline([7, 1, 2, 3], 2, 3)
    assert (tally.expected, tally.delivered, tally.out_of_order, tally.duplicated) == (2, 2, 0, 0)


def test_tallies_add_up_and_travel_as_dicts() -> None:
    total = tally_timeline([1, 2], 1, 2) + tally_timeline([1, None, 3], 1, 3)
    assert Tally.from_dict(total.as_dict()) == total
    assert (total.expected, total.delivered, total.told) == (5, 4, 1)


def test_told_loss_fails_the_node_steps_but_not_the_redis_step() -> None:
    told = tally_timeline([1, None, 3], 1, 3)
    node_step = StepResult("(a)", False, 3, told, {}, 1.0)
    redis_step = StepResult("(c)", True, 3, told, {}, 1.0)
    assert not node_step.passed and node_step.lost == 1
    assert redis_step.passed and redis_step.lost == 0
    silent = StepResult("(c)", True, 3, tally_timeline([1, 3], 1, 3), {}, 1.0)
    assert not silent.passed
    table = markdown_table([node_step, redis_step, silent])
    assert table.count("**FAILED**") == 2


def test_percentiles() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
