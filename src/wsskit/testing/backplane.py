"""The conformance suite every channels backplane passes.

Use it under pytest (with pytest-asyncio in auto mode) by subclassing
:class:`BackplaneConformance` in a ``Test...`` class that provides an async
``harness`` fixture yielding a :class:`BackplaneHarness`::

    class TestMemory(BackplaneConformance):
        @pytest.fixture
        async def harness(self):
            harness = memory_harness()
            yield harness
            await harness.aclose()

The harness makes *nodes*: started backplanes sharing one broker, as two
server processes share one Redis. It also loses the broker's history and, when
the backplane's clock can be driven, moves time forward (TTL tests are skipped
otherwise). When it can stop and start the broker, and restart it without its
data while nodes stay up, the outage tests run too (skipped otherwise): the
node is not :attr:`~Backplane.ready` and refuses with BackplaneError while the
broker is down, heals by itself, and never leaves a silent gap (a subscriber
sees the stream continue, or a :class:`Reset` first). Channel names are random per test so a
shared broker needs no flushing between tests.

This module imports nothing from pytest: a test that cannot run for a harness
returns early through :meth:`BackplaneHarness.skip`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..channels.backplanes.base import (
    Backplane,
    ClientInfo,
    Delivery,
    Join,
    Leave,
    Publication,
    Reset,
    Retention,
    StreamPosition,
)
from ..channels.backplanes.memory import MemoryBackplane, MemoryStore
from ..exceptions import BackplaneError

__all__ = ["ManualClock", "BackplaneHarness", "memory_harness", "BackplaneConformance", "Inbox", "wait_until"]

#: How long a test waits for a live delivery before failing: an upper bound
#: only, generous for a loaded 2-core CI machine where a broker's contended
#: publishes (NATS retries on a lost offset race) take seconds.
DELIVERY_TIMEOUT = 20.0


class ManualClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self.now += seconds


@dataclass
class BackplaneHarness:
    """What the suite needs from a backplane under test.

    ``make_node()`` returns a new backplane (not started) on the shared
    broker; ``lose_history()`` restarts the broker without persistence;
    ``advance(seconds)``, when not None, moves the broker's clock forward;
    ``skip(reason)`` is called by tests the harness cannot run (pass
    ``pytest.skip``); it defaults to doing nothing, and the test returns.
    ``stop_broker()`` and ``start_broker()``, when not None, play an outage
    (the broker may come back with or without its data);
    ``restart_losing_history()``, when not None, restarts the broker without
    its data while the nodes stay up (they reconnect by themselves).
    """

    make_node: Callable[[], Backplane]
    lose_history: Callable[[], Awaitable[None]]
    advance: Callable[[float], Awaitable[None]] | None = None
    skip: Callable[[str], object] = lambda reason: None
    nodes: list[Backplane] = field(default_factory=list)
    stop_broker: Callable[[], Awaitable[None]] | None = None
    start_broker: Callable[[], Awaitable[None]] | None = None
    restart_losing_history: Callable[[], Awaitable[None]] | None = None

    async def node(self) -> Backplane:
        """A started backplane on the shared broker, closed by :meth:`aclose`."""
        backplane = self.make_node()
        await backplane.start()
        self.nodes.append(backplane)
        return backplane

    async def aclose(self) -> None:
        """Close every node made."""
        for backplane in self.nodes:
            await backplane.close()
        self.nodes.clear()


def memory_harness(*, clock: ManualClock | None = None) -> BackplaneHarness:
    """A harness for ``memory://``: nodes share one :class:`MemoryStore` with a manual clock."""
    manual = clock if clock is not None else ManualClock()
    store = MemoryStore(clock=manual)

    async def lose_history() -> None:
        store.clear()

    async def advance(seconds: float) -> None:
        manual.advance(seconds)

    async def stop_broker() -> None:
        store.set_available(False)

    async def start_broker() -> None:
        store.set_available(True)

    async def restart_losing_history() -> None:
        store.restart()

    return BackplaneHarness(
        lambda: MemoryBackplane(store),
        lose_history,
        advance,
        stop_broker=stop_broker,
        start_broker=start_broker,
        restart_losing_history=restart_losing_history,
    )


class Inbox:
    """A delivery callback that collects what it gets, to await it in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Delivery]] = asyncio.Queue()

    def __call__(self, channel: str, delivery: Delivery) -> None:
        self.queue.put_nowait((channel, delivery))

    async def next(self) -> tuple[str, Delivery]:
        """The next delivery; raises :class:`TimeoutError` after :data:`DELIVERY_TIMEOUT` seconds."""
        return await asyncio.wait_for(self.queue.get(), DELIVERY_TIMEOUT)

    async def publication(self) -> Publication:
        """The next delivery, which must be a publication."""
        _, delivery = await self.next()
        assert isinstance(delivery, Publication), delivery
        return delivery

    def empty(self) -> bool:
        return self.queue.empty()


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DELIVERY_TIMEOUT) -> None:
    """Return once ``predicate()`` is true; raise AssertionError naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)  # polling a flag, not a timing assertion


async def _fails(attempt: Awaitable[Any]) -> bool:
    try:
        await attempt
    except BackplaneError:
        return True
    return False


async def _until_publication(inbox: Inbox, data: Any) -> tuple[list[Delivery], Publication]:
    # The deliveries before the publication of ``data``, and that publication.
    before: list[Delivery] = []
    while True:
        _, delivery = await inbox.next()
        if isinstance(delivery, Publication) and delivery.data == data:
            return before, delivery
        before.append(delivery)


def _channel(prefix: str = "conf") -> str:
    return f"{prefix}:{secrets.token_hex(8)}"


def _offsets(publications: Any) -> list[int]:
    return [p.offset for p in publications]


class BackplaneConformance:
    """The tests. Subclass under pytest with a ``harness`` fixture (see the module)."""

    # -- offsets and epochs ---------------------------------------------------------

    async def test_offsets_start_at_one_and_count_up(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        pubs = [await node.publish(channel, {"n": n}) for n in range(5)]
        assert _offsets(pubs) == [1, 2, 3, 4, 5]
        assert len({p.epoch for p in pubs}) == 1
        assert [p.data for p in pubs] == [{"n": n} for n in range(5)]
        result = await node.history(channel)
        assert result.position == StreamPosition(5, pubs[0].epoch)
        assert list(result.publications) == pubs

    async def test_new_channel_is_at_offset_zero_with_a_stable_epoch(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        first = await node.history(channel)
        assert list(first.publications) == []
        assert first.position.offset == 0
        assert first.position.epoch
        second = await node.history(channel)
        assert second.position == first.position
        publication = await node.publish(channel, "x")
        assert (publication.offset, publication.epoch) == (1, first.position.epoch)

    async def test_channels_count_separately(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        a, b = _channel(), _channel()
        await node.publish(a, 1)
        await node.publish(a, 2)
        assert (await node.publish(b, 3)).offset == 1
        assert (await node.history(a)).position.offset == 2

    async def test_json_values_round_trip(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        values: list[Any] = [None, True, 0, -7, 2.5, "é ☃", [1, [2]], {"a": {"b": None}}]
        for value in values:
            await node.publish(channel, value)
        result = await node.history(channel)
        assert [p.data for p in result.publications] == values

    # -- history and recovery -------------------------------------------------------

    async def test_since_returns_every_missed_publication_in_order(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        pubs = [await node.publish(channel, n) for n in range(10)]
        epoch = pubs[0].epoch
        result = await node.history(channel, since=StreamPosition(4, epoch))
        assert result.recovered is True
        assert _offsets(result.publications) == [5, 6, 7, 8, 9, 10]
        assert [p.data for p in result.publications] == [4, 5, 6, 7, 8, 9]
        assert result.position == StreamPosition(10, epoch)
        caught_up = await node.history(channel, since=StreamPosition(10, epoch))
        assert caught_up.recovered is True
        assert list(caught_up.publications) == []

    async def test_since_from_zero_recovers_a_whole_short_stream(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        epoch = (await node.history(channel)).position.epoch
        await node.publish(channel, "a")
        await node.publish(channel, "b")
        result = await node.history(channel, since=StreamPosition(0, epoch))
        assert result.recovered is True
        assert [p.data for p in result.publications] == ["a", "b"]

    async def test_history_is_capped_by_size(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        retention = Retention(size=3, ttl=300)
        pubs = [await node.publish(channel, n, retention=retention) for n in range(5)]
        epoch = pubs[0].epoch
        assert _offsets((await node.history(channel)).publications) == [3, 4, 5]
        gone = await node.history(channel, since=StreamPosition(1, epoch))
        assert gone.recovered is False
        assert list(gone.publications) == []
        assert gone.position == StreamPosition(5, epoch)
        kept = await node.history(channel, since=StreamPosition(2, epoch))
        assert kept.recovered is True
        assert _offsets(kept.publications) == [3, 4, 5]

    async def test_size_zero_keeps_no_history_but_counts(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        retention = Retention(size=0, ttl=300)
        pubs = [await node.publish(channel, n, retention=retention) for n in range(3)]
        assert _offsets(pubs) == [1, 2, 3]
        epoch = pubs[0].epoch
        assert list((await node.history(channel)).publications) == []
        assert (await node.history(channel, since=StreamPosition(2, epoch))).recovered is False
        assert (await node.history(channel, since=StreamPosition(3, epoch))).recovered is True

    async def test_other_epoch_is_not_recovered(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        await node.publish(channel, 1)
        await node.publish(channel, 2)
        result = await node.history(channel, since=StreamPosition(1, "not-the-epoch"))
        assert result.recovered is False
        assert list(result.publications) == []
        assert result.position.offset == 2

    async def test_position_ahead_of_the_stream_is_not_recovered(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        publication = await node.publish(channel, 1)
        result = await node.history(channel, since=StreamPosition(7, publication.epoch))
        assert result.recovered is False

    async def test_limit(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        pubs = [await node.publish(channel, n) for n in range(6)]
        epoch = pubs[0].epoch
        assert _offsets((await node.history(channel, limit=2)).publications) == [5, 6]
        assert list((await node.history(channel, limit=0)).publications) == []
        page = await node.history(channel, since=StreamPosition(1, epoch), limit=2)
        assert page.recovered is True
        assert _offsets(page.publications) == [2, 3]
        assert page.position == StreamPosition(6, epoch)

    async def test_lost_history_changes_the_epoch(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        pubs = [await node.publish(channel, n) for n in range(3)]
        old = pubs[-1].epoch
        await harness.lose_history()
        result = await node.history(channel, since=StreamPosition(3, old))
        assert result.recovered is False
        assert list(result.publications) == []
        assert result.position.epoch != old
        publication = await node.publish(channel, "after")
        assert publication.offset == result.position.offset + 1
        assert publication.epoch == result.position.epoch

    async def test_history_expires_after_its_ttl(self, harness: BackplaneHarness) -> None:
        if harness.advance is None:
            harness.skip("this backplane's clock cannot be driven")
            return
        node = await harness.node()
        channel = _channel()
        retention = Retention(size=100, ttl=10)
        await node.publish(channel, 1, retention=retention)
        await node.publish(channel, 2, retention=retention)
        await harness.advance(5)
        third = await node.publish(channel, 3, retention=retention)
        epoch = third.epoch
        await harness.advance(6)  # the first two are 11 s old, the third 6 s
        assert _offsets((await node.history(channel)).publications) == [3]
        assert (await node.history(channel, since=StreamPosition(1, epoch))).recovered is False
        kept = await node.history(channel, since=StreamPosition(2, epoch))
        assert kept.recovered is True
        assert _offsets(kept.publications) == [3]
        await harness.advance(11)  # no publication for longer than the ttl: the stream is gone
        gone = await node.history(channel, since=StreamPosition(3, epoch))
        assert gone.recovered is False
        assert gone.position.epoch != epoch
        assert (await node.publish(channel, 4, retention=retention)).offset == 1

    # -- idempotency ------------------------------------------------------------------

    async def test_a_retried_publish_is_stored_once(self, harness: BackplaneHarness) -> None:
        node, other = await harness.node(), await harness.node()
        channel = _channel()
        inbox = Inbox()
        await node.subscribe(channel, inbox)
        first = await node.publish(channel, "pay", idempotency_key="order-1")
        again = await other.publish(channel, "pay", idempotency_key="order-1")
        assert again == first
        different = await node.publish(channel, "pay", idempotency_key="order-2")
        assert different.offset == first.offset + 1
        assert _offsets((await node.history(channel)).publications) == [1, 2]
        # Delivered once: the next delivery after the first is the second key's.
        assert (await inbox.publication()).offset == 1
        assert (await inbox.publication()).offset == 2

    async def test_idempotency_keys_are_per_channel(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        a, b = _channel(), _channel()
        await node.publish(a, "x", idempotency_key="k")
        await node.publish(a, "y")
        assert (await node.publish(b, "z", idempotency_key="k")).data == "z"

    async def test_idempotency_window_ends(self, harness: BackplaneHarness) -> None:
        if harness.advance is None:
            harness.skip("this backplane's clock cannot be driven")
            return
        node = await harness.node()
        channel = _channel()
        retention = Retention(size=10, ttl=300, idempotency_window=30)
        first = await node.publish(channel, "a", idempotency_key="k", retention=retention)
        await harness.advance(10)
        assert await node.publish(channel, "a", idempotency_key="k", retention=retention) == first
        await harness.advance(25)
        later = await node.publish(channel, "a", idempotency_key="k", retention=retention)
        assert later.offset == first.offset + 1

    # -- live delivery ----------------------------------------------------------------

    async def test_delivery_reaches_subscribers_on_every_node(self, harness: BackplaneHarness) -> None:
        a, b = await harness.node(), await harness.node()
        channel = _channel()
        inbox_a, inbox_b = Inbox(), Inbox()
        await a.subscribe(channel, inbox_a)
        await b.subscribe(channel, inbox_b)
        from_a = await a.publish(channel, "from a")
        from_b = await b.publish(channel, "from b")
        for inbox in (inbox_a, inbox_b):
            assert await inbox.next() == (channel, from_a)
            assert await inbox.next() == (channel, from_b)

    async def test_subscription_is_in_force_when_subscribe_returns(self, harness: BackplaneHarness) -> None:
        a, b = await harness.node(), await harness.node()
        channel = _channel()
        inbox = Inbox()
        await b.subscribe(channel, inbox)
        publication = await a.publish(channel, "right away")
        assert await inbox.publication() == publication

    async def test_concurrent_publishers_get_distinct_offsets_in_order(
        self, harness: BackplaneHarness
    ) -> None:
        a, b = await harness.node(), await harness.node()
        channel = _channel()
        inbox_a, inbox_b = Inbox(), Inbox()
        await a.subscribe(channel, inbox_a)
        await b.subscribe(channel, inbox_b)
        count = 100
        pubs = await asyncio.gather(
            *(
                node.publish(channel, f"{name}{n}")
                for n in range(count // 2)
                for name, node in (("a", a), ("b", b))
            )
        )
        assert sorted(_offsets(pubs)) == list(range(1, count + 1))
        history = await a.history(channel)
        assert _offsets(history.publications) == list(range(1, count + 1))
        by_offset = {p.offset: p.data for p in pubs}
        assert [p.data for p in history.publications] == [by_offset[n] for n in range(1, count + 1)]
        for inbox in (inbox_a, inbox_b):
            received = [await inbox.publication() for _ in range(count)]
            assert _offsets(received) == list(range(1, count + 1))

    async def test_unsubscribe_stops_delivery(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        leaving, staying = Inbox(), Inbox()
        await node.subscribe(channel, leaving)
        await node.subscribe(channel, staying)
        await node.unsubscribe(channel, leaving)
        await node.unsubscribe(channel, Inbox())  # never subscribed: nothing happens
        publication = await node.publish(channel, "after")
        assert await staying.publication() == publication
        assert leaving.empty()

    async def test_subscribing_twice_delivers_once(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()
        inbox = Inbox()
        await node.subscribe(channel, inbox)
        await node.subscribe(channel, inbox)
        await node.publish(channel, 1)
        await node.publish(channel, 2)
        assert (await inbox.publication()).offset == 1
        assert (await inbox.publication()).offset == 2

    async def test_other_channels_are_not_delivered(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel, other = _channel(), _channel()
        inbox = Inbox()
        await node.subscribe(channel, inbox)
        await node.publish(other, "elsewhere")
        mine = await node.publish(channel, "here")
        assert await inbox.next() == (channel, mine)

    # -- presence -----------------------------------------------------------------------

    async def test_presence_across_nodes(self, harness: BackplaneHarness) -> None:
        a, b = await harness.node(), await harness.node()
        channel = _channel()
        alice, anonymous = ClientInfo("c-1", "alice"), ClientInfo("c-2", None)
        assert list(await a.presence(channel)) == []
        await a.presence_add(channel, alice)
        await b.presence_add(channel, anonymous)
        await b.presence_add(channel, anonymous)  # twice is once
        assert list(await a.presence(channel)) == [alice, anonymous]
        await a.presence_remove(channel, anonymous)
        await a.presence_remove(channel, ClientInfo("c-9"))  # absent: nothing happens
        assert list(await b.presence(channel)) == [alice]

    async def test_join_and_leave_are_delivered_when_announced(self, harness: BackplaneHarness) -> None:
        a, b = await harness.node(), await harness.node()
        channel = _channel()
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        bob = ClientInfo("c-3", "bob")
        await b.presence_add(channel, bob, announce=True)
        assert await inbox.next() == (channel, Join(bob))
        await b.presence_remove(channel, bob, announce=True)
        assert await inbox.next() == (channel, Leave(bob))
        await b.presence_add(channel, bob)  # not announced
        marker = await b.publish(channel, "marker")
        assert await inbox.next() == (channel, marker)

    # -- health and failures --------------------------------------------------------

    async def test_health_of_a_started_node(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        await node.health()

    async def test_a_closed_node_refuses_with_backplane_error(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        await node.close()
        await node.close()  # idempotent
        for attempt in (node.publish(_channel(), 1), node.health(), node.history(_channel())):
            try:
                await attempt
            except BackplaneError:
                continue
            raise AssertionError("a closed backplane answered")

    async def test_a_failing_callback_does_not_stop_delivery(self, harness: BackplaneHarness) -> None:
        node = await harness.node()
        channel = _channel()

        def broken(channel: str, delivery: Delivery) -> None:
            raise RuntimeError("a subscriber bug")

        inbox = Inbox()
        await node.subscribe(channel, broken)
        await node.subscribe(channel, inbox)
        await node.publish(channel, 1)
        await node.publish(channel, 2)
        assert _offsets([await inbox.publication(), await inbox.publication()]) == [1, 2]

    # -- readiness and outages ----------------------------------------------------------

    async def test_ready_once_started_and_not_after_close(self, harness: BackplaneHarness) -> None:
        unstarted = harness.make_node()
        assert unstarted.ready is False
        node = await harness.node()
        assert node.ready is True
        await node.close()
        assert node.ready is False

    async def test_an_outage_fails_loudly_then_heals(self, harness: BackplaneHarness) -> None:
        stop, start = harness.stop_broker, harness.start_broker
        if stop is None or start is None:
            harness.skip("this harness cannot stop the broker")
            return
        node = await harness.node()
        channel, other = _channel(), _channel()
        inbox = Inbox()
        await node.subscribe(channel, inbox)
        before = await node.publish(channel, "before")
        assert await inbox.publication() == before
        await stop()
        try:
            await wait_until(lambda: not node.ready, "the node sees the outage")
            assert await _fails(node.publish(channel, "during"))
            assert await _fails(node.history(channel))
            assert await _fails(node.subscribe(other, Inbox()))
            assert await _fails(node.health())
        finally:
            await start()
        await wait_until(lambda: node.ready, "the node is ready again")
        await node.health()
        after = await node.publish(channel, "after")
        missed, delivered = await _until_publication(inbox, "after")
        assert delivered == after
        assert all(not isinstance(d, Publication) or d.data != "during" for d in missed)
        if after.epoch == before.epoch:
            # The broker kept its data: the stream simply continues, and
            # nothing says otherwise.
            assert after.offset == before.offset + 1
            assert missed == [], missed
        else:
            # It lost it: the subscriber was told before the new stream.
            assert any(isinstance(d, Reset) for d in missed), missed

    async def test_a_broker_that_loses_history_resets_every_subscription(
        self, harness: BackplaneHarness
    ) -> None:
        restart = harness.restart_losing_history
        if restart is None:
            harness.skip("this harness cannot restart the broker")
            return
        a, b = await harness.node(), await harness.node()
        busy, quiet = _channel("busy"), _channel("quiet")
        busy_inbox, quiet_inbox = Inbox(), Inbox()
        await a.subscribe(busy, busy_inbox)
        await a.subscribe(quiet, quiet_inbox)  # nothing delivered: only its start to go by
        first = await b.publish(busy, "before")
        assert await busy_inbox.publication() == first
        await restart()
        await wait_until(lambda: a.ready and b.ready, "both nodes are ready again")
        for channel, inbox in ((busy, busy_inbox), (quiet, quiet_inbox)):
            after = await _publish_when_back(b, channel, "after")
            missed, delivered = await _until_publication(inbox, "after")
            assert delivered == after
            # Never a silent gap: the Reset comes before the new stream's first publication.
            assert [type(d) for d in missed] == [Reset], (channel, missed)
            reset = missed[0]
            assert isinstance(reset, Reset)
            # Where the stream stood when the node looked: already the new life.
            assert reset.position is None or reset.position.epoch == after.epoch
            if channel == busy:
                assert after.epoch != first.epoch


async def _publish_when_back(node: Backplane, channel: str, data: Any) -> Publication:
    # Right after a restart a pooled connection may still be a dead one: a
    # failed publish stored nothing, so trying again is safe.
    for _ in range(5):
        try:
            return await node.publish(channel, data)
        except BackplaneError:
            await asyncio.sleep(0.1)  # a pause between attempts, not a synchronisation
    return await node.publish(channel, data)
