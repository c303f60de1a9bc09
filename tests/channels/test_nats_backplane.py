"""The nats:// backplane on a private nats-server with JetStream: conformance, then two hubs."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.channels.conftest import client, serving
from tests.channels.nats_server import NatsServer, nats_server_binary
from wsskit.channels import Hub, Namespace, backplane_from_url
from wsskit.channels.backplanes.base import ClientInfo, Retention, StreamPosition
from wsskit.channels.backplanes.nats import NatsBackplane, decode_token, encode_token
from wsskit.exceptions import BackplaneError
from wsskit.testing.backplane import BackplaneConformance, BackplaneHarness, Inbox

#: Seconds a node may take to notice the server went away or came back.
RECONNECT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(nats_server_binary(), tmp_path_factory.mktemp("nats") / "store")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_server(nats_server: NatsServer) -> NatsServer:
    # A test that stopped the server and failed before restarting it leaves it down.
    nats_server.start()
    return nats_server


def _node(server: NatsServer, **options: Any) -> NatsBackplane:
    options.setdefault("reconnect_wait", 0.05)
    return NatsBackplane(server.url, **options)


async def _restart_without_data(server: NatsServer, nodes: list[NatsBackplane]) -> None:
    server.stop()
    for node in nodes:
        await node.wait_disconnected(RECONNECT_TIMEOUT)
    server.restart_without_data()
    for node in nodes:
        await node.wait_connected(RECONNECT_TIMEOUT)


def nats_harness(server: NatsServer) -> BackplaneHarness:
    """Nodes on ``server``; losing the history restarts it with an empty store."""
    harness: BackplaneHarness

    async def lose_history() -> None:
        await _restart_without_data(server, [n for n in harness.nodes if isinstance(n, NatsBackplane)])

    async def stop_broker() -> None:
        server.stop()

    async def start_broker() -> None:
        server.start()  # with its data

    harness = BackplaneHarness(
        lambda: _node(server),
        lose_history,
        skip=pytest.skip,
        stop_broker=stop_broker,
        start_broker=start_broker,
        restart_losing_history=lose_history,
    )
    return harness


class TestNatsConformance(BackplaneConformance):
    @pytest.fixture
    async def harness(self, running_server: NatsServer) -> AsyncIterator[BackplaneHarness]:
        harness = nats_harness(running_server)
        yield harness
        await harness.aclose()


# -- the backplane on its own ------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "chat:lobby", "a.b", "*", ">", "x y\tz", "é☃", "=3D", "c", "a/b+c,d@e"])
def test_channel_names_encode_to_one_safe_token(name: str) -> None:
    token = encode_token(name)
    assert decode_token(token) == name
    assert not set(token) & set(".*> \t\r\n")
    assert token.isascii()


def test_distinct_names_make_distinct_tokens() -> None:
    names = ["a.b", "a_b", "a=2Eb", "a-b", "A.b"]
    assert len({encode_token(n) for n in names}) == len(names)


def test_decode_refuses_what_encode_never_makes() -> None:
    for token in ["", "x", "ca.b", "c=2", "c=zz"]:
        with pytest.raises(ValueError):
            decode_token(token)


def test_backplane_from_url_makes_a_nats_backplane() -> None:
    for url in ("nats://127.0.0.1:4222", "tls://nats.example:4222"):
        backplane = backplane_from_url(url)
        assert isinstance(backplane, NatsBackplane)
        assert backplane.url == url


async def test_start_without_a_server_raises(running_server: NatsServer) -> None:
    port = NatsServer(running_server.binary, running_server.store).port  # a free port, nobody listening
    node = NatsBackplane(f"nats://127.0.0.1:{port}", timeout=0.5, reconnect_wait=0.05)
    with pytest.raises(BackplaneError):
        await node.start()
    await node.close()


async def test_publish_while_the_server_is_down_raises(running_server: NatsServer) -> None:
    node = _node(running_server)
    await node.start()
    try:
        channel = f"down:{secrets.token_hex(4)}"
        first = await node.publish(channel, 1)
        running_server.stop()
        await node.wait_disconnected(RECONNECT_TIMEOUT)
        with pytest.raises(BackplaneError):
            await node.publish(channel, 2)
        with pytest.raises(BackplaneError):
            await node.health()
        with pytest.raises(BackplaneError):
            await node.history(channel)
        running_server.start()  # with its data
        await node.wait_connected(RECONNECT_TIMEOUT)
        await node.health()
        again = await node.publish(channel, 3)
        assert (again.offset, again.epoch) == (2, first.epoch)
    finally:
        await node.close()


async def test_each_retention_has_its_own_stream_limits(running_server: NatsServer) -> None:
    node = _node(running_server)
    await node.start()
    try:
        small, large = Retention(size=2, ttl=60), Retention(size=50, ttl=60)
        a, b = f"r:{secrets.token_hex(4)}", f"r:{secrets.token_hex(4)}"
        for n in range(5):
            await node.publish(a, n, retention=small)
            await node.publish(b, n, retention=large)
        assert [p.data for p in (await node.history(a)).publications] == [3, 4]
        assert [p.data for p in (await node.history(b)).publications] == [0, 1, 2, 3, 4]
    finally:
        await node.close()


async def test_a_closed_node_leaves_its_clients_in_presence_until_they_expire(
    running_server: NatsServer,
) -> None:
    a, b = _node(running_server), _node(running_server)
    await a.start()
    await b.start()
    try:
        channel = f"p:{secrets.token_hex(4)}"
        inbox = Inbox()
        await a.subscribe(channel, inbox)
        publication = await b.publish(channel, {"k": [1, 2]})
        assert await inbox.publication() == publication
        await b.presence_add(channel, ClientInfo("z", "zed"))
        await b.close()  # as if it crashed: nothing removed its client
        assert [c.client for c in await a.presence(channel)] == ["z"]
    finally:
        await a.close()
        await b.close()


# -- two hubs over real WebSocket connections ----------------------------------------------


def _hub(server: NatsServer) -> Hub:
    namespaces = [
        Namespace("", publish="any"),
        Namespace("feed", history_size=1000, history_ttl=600, publish="any"),
    ]
    return Hub(_node(server), namespaces)


async def test_a_client_on_node_a_receives_what_is_published_on_node_b(
    running_server: NatsServer, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub_a, hub_b = _hub(running_server), _hub(running_server)
    channel = f"feed:{secrets.token_hex(4)}"
    async with (
        serving(hub_a, server_ssl) as url_a,
        serving(hub_b, server_ssl) as url_b,
        client(url_a, client_ssl) as on_a,
        client(url_b, client_ssl) as on_b,
    ):
        subscribed = await on_a.result("subscribe", channel=channel)
        assert subscribed["offset"] == 0
        published = await on_b.result("publish", channel=channel, data="from b")
        assert published == {"offset": 1, "epoch": subscribed["epoch"]}
        push = await on_a.push()
        assert push == {
            "push": "pub",
            "channel": channel,
            "offset": 1,
            "epoch": subscribed["epoch"],
            "data": "from b",
        }
        from_backend = await hub_b.publish(channel, {"n": 2})
        assert (await on_a.push())["offset"] == from_backend.offset == 2


async def test_resume_across_nodes_and_after_the_history_is_lost(
    running_server: NatsServer, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub_a, hub_b = _hub(running_server), _hub(running_server)
    channel = f"feed:{secrets.token_hex(4)}"
    async with serving(hub_a, server_ssl) as url_a, serving(hub_b, server_ssl) as url_b:
        async with client(url_a, client_ssl) as c:
            first = await c.result("subscribe", channel=channel)
        epoch = first["epoch"]
        pubs = [await hub_a.publish(channel, n) for n in range(200)]
        assert pubs[-1].offset == 200 and {p.epoch for p in pubs} == {epoch}
        async with client(url_b, client_ssl) as c:
            resumed = await c.result("subscribe", channel=channel, since={"offset": 0, "epoch": epoch})
            assert resumed["recovered"] is True
            assert [p["offset"] for p in resumed["publications"]] == list(range(1, 201))
            assert [p["data"] for p in resumed["publications"]] == list(range(200))

        nodes = [hub_a.backplane, hub_b.backplane]
        assert all(isinstance(n, NatsBackplane) for n in nodes)
        await _restart_without_data(running_server, [n for n in nodes if isinstance(n, NatsBackplane)])

        async with client(url_b, client_ssl) as c:
            lost = await c.result("subscribe", channel=channel, since={"offset": 200, "epoch": epoch})
            assert lost["recovered"] is False and lost["publications"] == []
            assert lost["epoch"] != epoch and lost["offset"] == 0
            await hub_a.publish(channel, "new life")
            push = await c.push()
            assert (push["offset"], push["epoch"], push["data"]) == (1, lost["epoch"], "new life")


async def test_history_since_a_lost_position_is_not_recovered(running_server: NatsServer) -> None:
    node = _node(running_server)
    await node.start()
    try:
        channel = f"h:{secrets.token_hex(4)}"
        epoch = (await node.publish(channel, 1)).epoch
        await node.publish(channel, 2)
        await _restart_without_data(running_server, [node])
        result = await node.history(channel, since=StreamPosition(1, epoch))
        assert result.recovered is False and result.position.epoch != epoch
    finally:
        await node.close()


@pytest.mark.parametrize("delivered_before", [True, False])
async def test_a_node_that_reconnects_late_delivers_what_it_missed_in_order(
    running_server: NatsServer, delivered_before: bool
) -> None:
    # The subscriber waits 2 s between reconnection attempts, the publisher
    # 50 ms: the publisher is back and publishes while the subscriber is still away.
    late, early = _node(running_server, reconnect_wait=2.0), _node(running_server)
    await late.start()
    await early.start()
    try:
        channel = f"gap:{secrets.token_hex(4)}"
        inbox = Inbox()
        await late.subscribe(channel, inbox)
        if delivered_before:
            assert (await early.publish(channel, 1)).offset == 1
            assert (await inbox.publication()).offset == 1
        running_server.stop()
        await late.wait_disconnected(RECONNECT_TIMEOUT)
        await early.wait_disconnected(RECONNECT_TIMEOUT)
        running_server.start()  # with its data
        await early.wait_connected(RECONNECT_TIMEOUT)
        missed = [await early.publish(channel, n) for n in (2, 3)]
        assert [p.offset for p in missed] == ([2, 3] if delivered_before else [1, 2])
        with pytest.raises(BackplaneError):
            await late.health()  # still away: it cannot have seen 2 and 3 live
        await late.wait_connected(RECONNECT_TIMEOUT)
        after = await early.publish(channel, 4)
        received = [await inbox.publication() for _ in range(3)]
        assert received == [*missed, after]
        assert inbox.empty()
    finally:
        await late.close()
        await early.close()
