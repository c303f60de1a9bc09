"""The redis:// backplane on a private redis-server: conformance, two hubs, restarts, dropped pub/sub."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.channels.conftest import client, serving
from tests.channels.redis_server import RedisServer, redis_server_binary
from wsskit.channels import Hub, Namespace, StreamPosition, backplane_from_url
from wsskit.channels.backplanes.base import ClientInfo, Join, Retention
from wsskit.channels.backplanes.redis import RedisBackplane
from wsskit.exceptions import BackplaneError, ConnectionClosed
from wsskit.testing.backplane import BackplaneConformance, BackplaneHarness, Inbox, ManualClock

#: How long a test waits for a node to reconnect its pub/sub connection.
RECONNECT_TIMEOUT = 10.0


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(redis_server_binary())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    # A plain client for what the tests do behind the backplanes' backs.
    connection = Redis.from_url(redis_server.url)
    try:
        yield connection
    finally:
        await connection.aclose()


def _channel(prefix: str = "feed") -> str:
    return f"{prefix}:{secrets.token_hex(6)}"


async def _execute(admin: Redis, *args: Any) -> Any:
    command: Callable[..., Any] = admin.execute_command
    return await command(*args)


class TestRedisConformance(BackplaneConformance):
    @pytest.fixture
    async def harness(self, redis_server: RedisServer, admin: Redis) -> AsyncIterator[BackplaneHarness]:
        clock = ManualClock()

        async def lose_history() -> None:
            await _execute(admin, "FLUSHALL")

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        harness = BackplaneHarness(
            lambda: RedisBackplane(redis_server.url, clock=clock),
            lose_history,
            advance,
            pytest.skip,
            stop_broker=redis_server.stop,
            start_broker=redis_server.start,
            restart_losing_history=redis_server.restart,
        )
        yield harness
        await harness.aclose()


class TestRedisConformanceOnRedisTime(BackplaneConformance):
    """The same on Redis's own clock, as in production (the TTL tests are skipped)."""

    @pytest.fixture
    async def harness(self, redis_server: RedisServer, admin: Redis) -> AsyncIterator[BackplaneHarness]:
        async def lose_history() -> None:
            await _execute(admin, "FLUSHALL")

        harness = BackplaneHarness(
            lambda: RedisBackplane(redis_server.url),
            lose_history,
            None,
            pytest.skip,
            stop_broker=redis_server.stop,
            start_broker=redis_server.start,
            restart_losing_history=redis_server.restart,
        )
        yield harness
        await harness.aclose()


# -- the node on its own --------------------------------------------------------------------


def test_backplane_from_url_makes_redis_backplanes() -> None:
    for url in ("redis://localhost:6379/0", "rediss://redis.example:6380/2"):
        backplane = backplane_from_url(url)
        assert isinstance(backplane, RedisBackplane)
        assert backplane.url == url


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        RedisBackplane(probe_timeout=0)
    with pytest.raises(ValueError):
        RedisBackplane(prefix="")


async def test_start_fails_loudly_without_redis() -> None:
    node = RedisBackplane(f"redis://127.0.0.1:{_closed_port()}/0", timeout=1.0)
    with pytest.raises(BackplaneError):
        await node.start()
    with pytest.raises(BackplaneError):
        await node.publish("feed:x", 1)


def _closed_port() -> int:
    from tests.channels.redis_server import free_port

    return free_port()


async def test_keys_and_stream_layout(redis_server: RedisServer, admin: Redis) -> None:
    node = RedisBackplane(redis_server.url)
    await node.start()
    try:
        channel = _channel()
        retention = Retention(size=2, ttl=60)
        for n in range(5):
            await node.publish(channel, {"n": n}, retention=retention)
        stream = f"wsskit:{{{channel}}}:s"
        # Exact trimming: exactly `size` entries, ids are the offsets.
        entries = await _execute(admin, "XRANGE", stream, "-", "+")
        assert [entry[0] for entry in entries] == [b"4-0", b"5-0"]
        assert await _execute(admin, "HGET", f"wsskit:{{{channel}}}:m", "top") == b"5"
        for key in (stream, f"wsskit:{{{channel}}}:m"):
            assert 0 < await _execute(admin, "PTTL", key) <= 60_000
    finally:
        await node.close()


async def test_scripts_are_loaded_again_after_script_flush(redis_server: RedisServer, admin: Redis) -> None:
    node = RedisBackplane(redis_server.url)
    await node.start()
    try:
        channel = _channel()
        await node.publish(channel, 1)
        await _execute(admin, "SCRIPT", "FLUSH")  # EVALSHA now answers NOSCRIPT
        assert (await node.publish(channel, 2)).offset == 2
        assert [p.data for p in (await node.history(channel)).publications] == [1, 2]
    finally:
        await node.close()


async def test_a_crashed_nodes_presence_expires(redis_server: RedisServer) -> None:
    clock = ManualClock()
    crashing = RedisBackplane(redis_server.url, clock=clock, presence_ttl=30)
    staying = RedisBackplane(redis_server.url, clock=clock, presence_ttl=30)
    await crashing.start()
    await staying.start()
    try:
        channel = _channel("chat")
        await crashing.presence_add(channel, ClientInfo("c-1", "alice"))
        await staying.presence_add(channel, ClientInfo("c-2", "bob"))
        await crashing.close()  # gone without leaving: it refreshes nothing any more
        clock.advance(20)
        await staying._refresh_presence(restore=False)  # what its periodic task does
        assert [c.client for c in await staying.presence(channel)] == ["c-1", "c-2"]
        clock.advance(15)  # c-1 was last refreshed 35 s ago, c-2 15 s ago
        assert list(await staying.presence(channel)) == [ClientInfo("c-2", "bob")]
    finally:
        await staying.close()


async def test_publish_during_an_outage_raises_and_the_node_recovers(redis_server: RedisServer) -> None:
    node = RedisBackplane(redis_server.url, timeout=1.0)
    await node.start()
    try:
        channel = _channel()
        before = await node.publish(channel, "before")
        await redis_server.stop()
        with pytest.raises(BackplaneError):
            await node.publish(channel, "during")
        with pytest.raises(BackplaneError):
            await node.health()
        with pytest.raises(BackplaneError):
            await node.history(channel)
        with pytest.raises(BackplaneError):
            await node.subscribe(channel, Inbox())
        await redis_server.start()  # empty: a restart without persistence
        await asyncio.wait_for(node.wait_connected(connects=2), RECONNECT_TIMEOUT)
        await node.health()
        after = await node.publish(channel, "after")
        assert (after.offset, after.epoch != before.epoch) == (1, True)
        result = await node.history(channel, since=StreamPosition(before.offset, before.epoch))
        assert result.recovered is False
        assert list(result.publications) == []
    finally:
        await node.close()


async def test_a_killed_pubsub_connection_is_resubscribed_and_caught_up(
    redis_server: RedisServer, admin: Redis
) -> None:
    a, b = RedisBackplane(redis_server.url), RedisBackplane(redis_server.url)
    await a.start()
    await b.start()
    try:
        channel = _channel()
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        first = await b.publish(channel, 1)
        assert await inbox.publication() == first
        killed = await _execute(admin, "CLIENT", "KILL", "TYPE", "pubsub")
        assert killed == 2  # one pub/sub connection per node
        # Redis dropped a's subscription at once: this one is missed live and
        # comes from the history when a resubscribes.
        second = await b.publish(channel, 2)
        assert await inbox.publication() == second
        assert a.stats["pubsub_connects"] == 2
        third = await b.publish(channel, 3)
        assert await inbox.publication() == third
        assert inbox.empty()
    finally:
        await a.close()
        await b.close()


async def test_the_probe_detects_a_deaf_connection(redis_server: RedisServer) -> None:
    # A long probe interval: the test runs the probe itself.
    a = RedisBackplane(redis_server.url, probe_interval=3600)
    b = RedisBackplane(redis_server.url, probe_interval=3600)
    await a.start()
    await b.start()
    try:
        channel = _channel()
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        assert await a.probe() is True
        first = await b.publish(channel, 1)
        assert await inbox.publication() == first
        # Make a's connection deaf behind its back, as a broken proxy or a
        # lost subscription would: it believes it is subscribed and hears nothing.
        conn = a._conn
        assert conn is not None
        await conn.send_command("UNSUBSCRIBE")
        missed = await b.publish(channel, 2)
        assert await a.probe() is False
        assert a.stats["probe_failures"] == 1
        # It reconnects, resubscribes and catches up from the history.
        assert await inbox.publication() == missed
        assert a.stats["pubsub_connects"] == 2
        assert await b.publish(channel, 3) == await inbox.publication()
    finally:
        await a.close()
        await b.close()


async def test_the_probe_times_out_on_a_connection_that_hears_nothing(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = RedisBackplane(redis_server.url, probe_interval=3600, probe_timeout=0.2)
    b = RedisBackplane(redis_server.url, probe_interval=3600)
    await a.start()
    await b.start()
    try:
        channel = _channel()
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        first = await b.publish(channel, 1)
        assert await inbox.publication() == first
        # Subscribed as far as Redis knows, yet the probe never comes back
        # (as through a half-open TCP connection): the probe's timeout fires.
        monkeypatch.setattr(a, "_probe_arrived", lambda nonce: None)
        assert await a.probe() is False
        monkeypatch.undo()
        await asyncio.wait_for(a.wait_connected(connects=2), RECONNECT_TIMEOUT)
        assert await a.probe() is True
        assert await b.publish(channel, 2) == await inbox.publication()
    finally:
        await a.close()
        await b.close()


# -- two hubs over real WebSocket connections ---------------------------------------------


def _namespaces() -> list[Namespace]:
    return [
        Namespace("", publish="any"),
        Namespace("feed", publish="any", history_size=1000),
        Namespace("quiet", publish="any", history_size=0),
        Namespace("chat", publish="any", presence=True, join_leave=True),
    ]


class _TwoHubs:
    def __init__(self, url_a: str, url_b: str, hub_a: Hub, hub_b: Hub) -> None:
        self.url_a, self.url_b, self.hub_a, self.hub_b = url_a, url_b, hub_a, hub_b

    def node(self, hub: Hub) -> RedisBackplane:
        backplane = hub.backplane
        assert isinstance(backplane, RedisBackplane)
        return backplane


@pytest.fixture
async def two_hubs(redis_server: RedisServer, server_ssl: ssl.SSLContext) -> AsyncIterator[_TwoHubs]:
    async with AsyncExitStack() as stack:
        hubs = [
            Hub(RedisBackplane(redis_server.url, timeout=2.0, probe_interval=3600), _namespaces())
            for _ in range(2)
        ]
        urls = [await stack.enter_async_context(serving(hub, server_ssl)) for hub in hubs]
        yield _TwoHubs(urls[0], urls[1], hubs[0], hubs[1])


async def test_subscribed_on_node_a_receives_what_is_published_on_node_b(
    two_hubs: _TwoHubs, client_ssl: ssl.SSLContext
) -> None:
    channel = _channel()
    async with client(two_hubs.url_a, client_ssl) as on_a, client(two_hubs.url_b, client_ssl) as on_b:
        subscribed = await on_a.result("subscribe", channel=channel)
        assert subscribed["offset"] == 0
        published = await on_b.result("publish", channel=channel, data={"text": "from b"})
        assert published == {"offset": 1, "epoch": subscribed["epoch"]}
        push = await on_a.push()
        assert push == {
            "push": "pub",
            "channel": channel,
            "offset": 1,
            "epoch": subscribed["epoch"],
            "data": {"text": "from b"},
        }
        await two_hubs.hub_b.publish(channel, "from b's backend")
        assert (await on_a.push())["data"] == "from b's backend"
        # Join/leave and presence across nodes.
        room = _channel("chat")
        await on_a.result("subscribe", channel=room)
        join = await on_a.push()
        assert join["push"] == "join"
        await on_b.result("subscribe", channel=room)
        other = await on_a.push()
        assert other["push"] == "join" and other["info"]["client"] != join["info"]["client"]
        clients = (await on_b.result("presence", channel=room))["clients"]
        assert sorted(c["client"] for c in clients) == sorted(
            [join["info"]["client"], other["info"]["client"]]
        )


async def test_resume_across_nodes_recovers_every_missed_publication(
    two_hubs: _TwoHubs, client_ssl: ssl.SSLContext
) -> None:
    channel = _channel()
    async with client(two_hubs.url_a, client_ssl) as c:
        result = await c.result("subscribe", channel=channel)
        epoch = result["epoch"]
        await two_hubs.hub_b.publish(channel, 0)
        last = await c.push()
    for n in range(1, 1001):  # while the client is away
        await two_hubs.hub_b.publish(channel, n)
    async with client(two_hubs.url_b, client_ssl) as c:
        since = {"offset": last["offset"], "epoch": epoch}
        resumed = await c.result("subscribe", channel=channel, since=since)
        assert resumed["recovered"] is True
        assert [p["offset"] for p in resumed["publications"]] == list(range(2, 1002))
        assert [p["data"] for p in resumed["publications"]] == list(range(1, 1001))


async def test_a_redis_restart_gives_recovered_false_never_a_gap(
    two_hubs: _TwoHubs, redis_server: RedisServer, client_ssl: ssl.SSLContext
) -> None:
    channel = _channel()
    async with client(two_hubs.url_a, client_ssl) as staying:
        async with client(two_hubs.url_a, client_ssl) as leaving:
            subscribed = await leaving.result("subscribe", channel=channel)
            await staying.result("subscribe", channel=channel)
            for n in range(3):
                await two_hubs.hub_b.publish(channel, n)
            pushes = [await leaving.push() for _ in range(3)]
            assert [p["offset"] for p in pushes] == [1, 2, 3]
            assert [(await staying.push())["offset"] for _ in range(3)] == [1, 2, 3]
        old_epoch = subscribed["epoch"]
        await redis_server.restart()
        with pytest.raises(BackplaneError):
            # Until the node noticed, or while it reconnects: never a silent success.
            await asyncio.wait_for(_publish_until_it_fails(two_hubs.hub_b, channel), RECONNECT_TIMEOUT)
        for hub in (two_hubs.hub_a, two_hubs.hub_b):
            await asyncio.wait_for(two_hubs.node(hub).wait_connected(connects=2), RECONNECT_TIMEOUT)
        # Node a cannot prove that the client that stayed missed nothing (the
        # history is gone): it is told with 4002, before any new publication.
        with pytest.raises(ConnectionClosed):
            await staying.push()
        assert staying.ws.close_code == 4002
        after = await _publish_when_reachable(two_hubs.hub_b, channel, "after")
        assert after.epoch != old_epoch
        assert after.offset == 1
    async with client(two_hubs.url_a, client_ssl) as back:
        resumed = await back.result("subscribe", channel=channel, since={"offset": 3, "epoch": old_epoch})
        assert resumed["recovered"] is False
        assert resumed["publications"] == []
        assert (resumed["offset"], resumed["epoch"]) == (1, after.epoch)


async def _publish_until_it_fails(hub: Hub, channel: str) -> None:
    # The restart killed the connections; the first command on each raises.
    while True:
        await hub.publish(channel, "lost?")


async def _publish_when_reachable(hub: Hub, channel: str, data: Any) -> Any:
    # After a restart the command pool may hold more dead connections: each
    # failed publish stored nothing, so trying again is safe.
    for _ in range(20):
        try:
            return await hub.publish(channel, data)
        except BackplaneError:
            continue
    raise AssertionError("the backplane never came back")


async def test_a_dropped_pubsub_connection_is_caught_up_for_websocket_clients(
    two_hubs: _TwoHubs, admin: Redis, client_ssl: ssl.SSLContext
) -> None:
    channel = _channel()
    async with client(two_hubs.url_a, client_ssl) as c:
        await c.result("subscribe", channel=channel)
        await two_hubs.hub_b.publish(channel, 1)
        assert (await c.push())["offset"] == 1
        await _execute(admin, "CLIENT", "KILL", "TYPE", "pubsub")
        for n in range(2, 6):
            await two_hubs.hub_b.publish(channel, n)
        assert [(await c.push())["data"] for _ in range(4)] == [2, 3, 4, 5]


async def test_a_missed_publication_without_history_closes_with_4002(
    two_hubs: _TwoHubs, client_ssl: ssl.SSLContext
) -> None:
    channel = _channel("quiet")  # no history: nothing to catch up from
    node_a = two_hubs.node(two_hubs.hub_a)
    async with client(two_hubs.url_a, client_ssl) as c:
        await c.result("subscribe", channel=channel)
        await two_hubs.hub_b.publish(channel, 1)
        assert (await c.push())["offset"] == 1
        conn = node_a._conn
        assert conn is not None
        await conn.send_command("UNSUBSCRIBE")  # deaf
        await two_hubs.hub_b.publish(channel, 2)  # missed by node a
        assert await node_a.probe() is False
        await asyncio.wait_for(node_a.wait_connected(connects=2), RECONNECT_TIMEOUT)
        await two_hubs.hub_b.publish(channel, 3)  # reveals the gap
        with pytest.raises(ConnectionClosed):
            await c.push()
        assert c.ws.close_code == 4002


async def test_join_is_announced_across_nodes(redis_server: RedisServer) -> None:
    a, b = RedisBackplane(redis_server.url), RedisBackplane(redis_server.url)
    await a.start()
    await b.start()
    try:
        channel = _channel("chat")
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        info = ClientInfo("c-7", None)
        await b.presence_add(channel, info, announce=True)
        assert await inbox.next() == (channel, Join(info))
    finally:
        await a.close()
        await b.close()
