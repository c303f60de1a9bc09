"""The hub over real TLS sockets: subscribe, publish, resume, permissions, slow consumers."""

from __future__ import annotations

import secrets
import ssl
from typing import Any

import pytest

from tests.channels.conftest import Client, client, serving
from wsskit.channels import (
    Hub,
    HubLimits,
    MemoryBackplane,
    MemoryStore,
    Namespace,
    Publication,
    StreamPosition,
    WireLimits,
    backplane_from_url,
    channel_token,
)
from wsskit.channels.backplanes.base import Delivery, HistoryResult
from wsskit.exceptions import ConnectionClosed
from wsskit.testing import ManualClock

KEY = b"k" * 32


def _namespaces(**default: Any) -> list[Namespace]:
    return [
        Namespace("", publish="authenticated", **default),
        Namespace("feed", history_size=2000, history_ttl=600, publish="authenticated"),
        Namespace("chat", presence=True, join_leave=True, publish="authenticated", subscribe="authenticated"),
        Namespace("admins", subscribe=["root"]),
        Namespace("private", subscribe="token", history="token"),
        Namespace("quiet", history_size=0, publish="any"),
    ]


def _hub(backplane: MemoryBackplane | None = None, **options: Any) -> Hub:
    return Hub(backplane or MemoryBackplane(), _namespaces(), token_key=KEY, **options)


def _offsets(publications: list[dict[str, Any]]) -> list[int]:
    return [p["offset"] for p in publications]


async def _drain_pubs(c: Client, count: int) -> list[dict[str, Any]]:
    pushes = [await c.push() for _ in range(count)]
    assert all(p["push"] == "pub" for p in pushes), pushes
    return pushes


# -- basics ------------------------------------------------------------------------


async def test_subscribe_publish_and_receive(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url, client(url, client_ssl, "alice") as c:
        assert c.ws.subprotocol == "wsskit.channels.v1"
        result = await c.result("subscribe", channel="news")
        assert result["offset"] == 0 and result["recovered"] is False and result["publications"] == []
        epoch = result["epoch"]
        published = await c.result("publish", channel="news", data={"text": "hello"})
        assert published == {"offset": 1, "epoch": epoch}
        assert await c.push() == {
            "push": "pub",
            "channel": "news",
            "offset": 1,
            "epoch": epoch,
            "data": {"text": "hello"},
        }
        assert await c.result("ping") == {}


async def test_backend_publish_reaches_every_subscriber_through_one_broker_subscription(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    backplane = MemoryBackplane()
    hub = _hub(backplane)
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as a, client(url, client_ssl) as b:
        await a.result("subscribe", channel="news")
        await b.result("subscribe", channel="news")
        assert backplane.subscriptions() == {"news": 1}
        publication = await hub.publish("news", [1, 2, 3])
        for c in (a, b):
            push = await c.push()
            assert (push["offset"], push["data"]) == (publication.offset, [1, 2, 3])
        await a.result("unsubscribe", channel="news")
        assert backplane.subscriptions() == {"news": 1}
        await b.result("unsubscribe", channel="news")
        assert backplane.subscriptions() == {}
        # Unsubscribed: the next thing a receives is its own command's reply, no push.
        await hub.publish("news", "unheard")
        assert await a.result("ping") == {}
        assert not a.pushes


async def test_sessions_and_subscriber_counts_of_this_node(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub()
    assert hub.sessions() == [] and hub.subscriber_counts() == {}
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as a, client(url, client_ssl) as b:
        await a.result("subscribe", channel="news")
        await b.result("subscribe", channel="news")
        await b.result("subscribe", channel="sport")
        assert hub.subscriber_counts() == {"news": 2, "sport": 1}
        sessions = hub.sessions()
        assert len(sessions) == 2
        assert len({session.connection for session in sessions}) == 2
        assert all(session.connection.state.name == "OPEN" for session in sessions)
        await b.result("unsubscribe", channel="sport")
        assert hub.subscriber_counts() == {"news": 2}


async def test_history_command(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        pubs = [await hub.publish("feed:h", n) for n in range(5)]
        epoch = pubs[0].epoch
        last_two = await c.result("history", channel="feed:h", limit=2)
        assert last_two == {
            "epoch": epoch,
            "offset": 5,
            "recovered": True,
            "publications": [{"offset": 4, "data": 3}, {"offset": 5, "data": 4}],
        }
        page = await c.result("history", channel="feed:h", since={"offset": 1, "epoch": epoch}, limit=2)
        assert _offsets(page["publications"]) == [2, 3]
        stale = await c.result("history", channel="feed:h", since={"offset": 1, "epoch": "old"})
        assert stale["recovered"] is False and stale["publications"] == []


# -- resuming ------------------------------------------------------------------------


async def test_resume_after_1000_missed_publications(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url:
        async with client(url, client_ssl) as c:
            await c.result("subscribe", channel="feed:live")
            first = await hub.publish("feed:live", "before")
            push = await c.push()
            position = {"offset": push["offset"], "epoch": push["epoch"]}
        assert position == {"offset": first.offset, "epoch": first.epoch}
        for n in range(1000):
            await hub.publish("feed:live", {"n": n})
        async with client(url, client_ssl) as c:
            result = await c.result("subscribe", channel="feed:live", since=position)
            assert result["recovered"] is True
            assert result["epoch"] == first.epoch
            assert result["offset"] == 1001
            assert _offsets(result["publications"]) == list(range(2, 1002))
            assert [p["data"] for p in result["publications"]] == [{"n": n} for n in range(1000)]
            after = await hub.publish("feed:live", "after")
            assert (await c.push())["offset"] == after.offset == 1002


class _BusyBackplane(MemoryBackplane):
    """A memory backplane on which other nodes publish while a history is being read."""

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        await self.publish(channel, "during, before the read")
        result = await super().history(channel, since=since, limit=limit)
        await self.publish(channel, "during, after the read")
        return result


async def test_resume_while_others_publish_has_no_gap_and_no_duplicate(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub(_BusyBackplane())
    async with serving(hub, server_ssl) as url:
        first = await hub.publish("feed:busy", 0)
        for n in range(1, 5):
            await hub.publish("feed:busy", n)
        async with client(url, client_ssl) as c:
            since = {"offset": first.offset, "epoch": first.epoch}
            result = await c.result("subscribe", channel="feed:busy", since=since)
            assert result["recovered"] is True
            # 2-5 published before, 6 while the history was read; 7 after it.
            assert _offsets(result["publications"]) == [2, 3, 4, 5, 6]
            pushes = await _drain_pubs(c, 1)
            assert _offsets(pushes) == [7]
            assert pushes[0]["data"] == "during, after the read"
            marker = await hub.publish("feed:busy", "marker")
            assert (await c.push())["offset"] == marker.offset == 8


async def test_fresh_subscribe_while_others_publish_starts_after_the_position(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub(_BusyBackplane())
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        result = await c.result("subscribe", channel="feed:fresh")
        assert result["offset"] == 1 and result["publications"] == []
        assert _offsets(await _drain_pubs(c, 1)) == [2]


async def test_lost_history_gives_recovered_false(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    hub = _hub(MemoryBackplane(store))
    async with serving(hub, server_ssl) as url:
        old = await hub.publish("feed:r", "x")
        store.clear()  # the broker restarts without persistence
        new = await hub.publish("feed:r", "y")
        assert new.epoch != old.epoch
        async with client(url, client_ssl) as c:
            result = await c.result("subscribe", channel="feed:r", since={"offset": 1, "epoch": old.epoch})
            assert result == {"epoch": new.epoch, "offset": 1, "recovered": False, "publications": []}


async def test_a_new_process_gives_recovered_false(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    first_hub = _hub()
    async with serving(first_hub, server_ssl) as url:
        old_pub = await first_hub.publish("feed:p", 1)
    second_hub = _hub()
    async with serving(second_hub, server_ssl) as url, client(url, client_ssl) as c:
        since = {"offset": old_pub.offset, "epoch": old_pub.epoch}
        result = await c.result("subscribe", channel="feed:p", since=since)
        assert result["recovered"] is False
        assert result["epoch"] != old_pub.epoch


# -- idempotency ---------------------------------------------------------------------


async def test_a_retried_publish_is_stored_and_delivered_once(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url, client(url, client_ssl, "alice") as c:
        await c.result("subscribe", channel="news")
        first = await c.result("publish", channel="news", data="pay", idempotency_key="order-17")
        again = await c.result("publish", channel="news", data="pay", idempotency_key="order-17")
        assert again == first == {"offset": 1, "epoch": first["epoch"]}
        other = await c.result("publish", channel="news", data="pay", idempotency_key="order-18")
        assert other["offset"] == 2
        assert _offsets(await _drain_pubs(c, 2)) == [1, 2]
        history = await hub.history("news")
        assert [p.offset for p in history.publications] == [1, 2]


# -- permissions and errors ----------------------------------------------------------------


async def test_permissions(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url:
        async with client(url, client_ssl) as anonymous:
            assert await anonymous.error("publish", channel="news", data=1) == 103
            assert await anonymous.error("subscribe", channel="chat:room") == 103
            assert await anonymous.error("subscribe", channel="admins:x") == 103
            assert await anonymous.error("subscribe", channel="private:alice") == 103
            assert await anonymous.error("subscribe", channel="nope:x") == 104
            await anonymous.result("subscribe", channel="news")
        async with client(url, client_ssl, "alice") as alice:
            assert await alice.error("subscribe", channel="admins:x") == 103
            await alice.result("subscribe", channel="chat:room")
            await alice.result("publish", channel="news", data=1)
            own = channel_token(KEY, "private:alice", "alice")
            bobs = channel_token(KEY, "private:alice", "bob")
            other_channel = channel_token(KEY, "private:bob", "alice")
            expired = channel_token(KEY, "private:alice", "alice", ttl=-1)
            for token in (bobs, other_channel, expired, "garbage"):
                assert await alice.error("subscribe", channel="private:alice", token=token) == 103
            assert await alice.error("history", channel="private:alice") == 103
            await alice.result("subscribe", channel="private:alice", token=own)
            await alice.result("history", channel="private:alice", token=own)


async def test_command_errors(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = _hub(limits=HubLimits(max_channels=2))
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        assert await c.error("dance") == 101
        assert await c.error("subscribe") == 102
        assert await c.error("subscribe", channel="bad channel!") == 102
        assert await c.error("subscribe", channel="x" * 256) == 105
        assert await c.error("subscribe", channel="a", extra=1) == 102
        assert await c.error("subscribe", channel="a", since={"offset": -1, "epoch": "e"}) == 102
        assert await c.error("history", channel="a", limit=5000) == 105
        assert await c.error("publish", channel="quiet") == 102
        assert await c.error("unsubscribe", channel="a") == 107
        await c.result("subscribe", channel="a")
        assert await c.error("subscribe", channel="a") == 106
        await c.result("subscribe", channel="b")
        assert await c.error("subscribe", channel="c") == 105
        assert await c.error("presence", channel="a") == 102
        reply = await c.call("dance")
        assert reply["error"] == {"code": 101, "message": "unknown command 'dance'"}


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1]",
        '{"cmd": "ping"}',
        '{"id": 0, "cmd": "ping"}',
        b"\x00",
        '{"id": 1, "cmd": "ping"}' + " " * 70000,  # over the hub's 64 KiB, under serve's max_size
    ],
)
async def test_bad_protocol_usage_closes_with_4008(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, message: str | bytes
) -> None:
    async with serving(_hub(), server_ssl) as url, client(url, client_ssl) as c:
        await c.ws.send(message)
        with pytest.raises(ConnectionClosed):
            await c.ws.recv()
        assert c.ws.close_code == 4008


async def test_without_the_subprotocol_closes_with_4008(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with serving(_hub(), server_ssl) as url, client(url, client_ssl, subprotocols=None) as c:
        assert c.ws.subprotocol is None
        with pytest.raises(ConnectionClosed):
            await c.ws.recv()
        assert c.ws.close_code == 4008


async def test_backplane_down_refuses_publish_loudly(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    hub = _hub(MemoryBackplane(store))
    async with serving(hub, server_ssl) as url, client(url, client_ssl, "alice") as c:
        await hub.publish("news", "before")
        store.set_available(False)
        assert await c.error("publish", channel="news", data="lost?") == 108
        assert await c.error("subscribe", channel="news") == 108
        assert await c.error("history", channel="news") == 108
        store.set_available(True)
        result = await c.result("subscribe", channel="news", since={"offset": 0, "epoch": "x"})
        assert result["offset"] == 1  # nothing was stored during the outage
        assert [p.data for p in (await hub.history("news")).publications] == ["before"]


# -- presence ---------------------------------------------------------------------------------


async def test_presence_and_join_leave(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url, client(url, client_ssl, "alice") as alice:
        await alice.result("subscribe", channel="chat:room")
        join = await alice.push()
        assert join["push"] == "join" and join["info"]["user"] == "alice"
        alice_id = join["info"]["client"]
        async with client(url, client_ssl, "bob") as bob:
            await bob.result("subscribe", channel="chat:room")
            bob_join = await alice.push()
            assert bob_join["push"] == "join" and bob_join["info"]["user"] == "bob"
            presence = await alice.result("presence", channel="chat:room")
            users = sorted((c["user"], c["client"]) for c in presence["clients"])
            assert users == sorted([("alice", alice_id), ("bob", bob_join["info"]["client"])])
        leave = await alice.push()
        assert leave == {"push": "leave", "channel": "chat:room", "info": bob_join["info"]}
        presence = await alice.result("presence", channel="chat:room")
        assert presence == {"clients": [{"client": alice_id, "user": "alice"}]}
        assert [c.user for c in await hub.presence("chat:room")] == ["alice"]
        await alice.result("unsubscribe", channel="chat:room")
        assert await hub.presence("chat:room") == []


# -- slow consumers and shutdown ----------------------------------------------------------------


async def test_a_slow_consumer_is_disconnected_with_4000_and_resumes(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub(limits=HubLimits(queue_size=8, wire=WireLimits(max_message_size=2**20)))
    payload = secrets.token_urlsafe(49152)  # 64 KiB that compression cannot shrink
    async with serving(hub, server_ssl, max_size=2**20) as url:
        async with (
            client(url, client_ssl, max_size=2**20) as slow,
            client(url, client_ssl, "alice") as publisher,
        ):
            subscribed = await slow.result("subscribe", channel="feed:big")
            epoch = subscribed["epoch"]
            # The slow client stops reading; publish until the hub gives up on it.
            published = 0
            while hub.stats.slow_consumers == 0:
                assert published < 1000, "the slow consumer was never disconnected"
                await publisher.result("publish", channel="feed:big", data=payload)
                published += 1
            # Now read what made it through, up to the Close.
            received: list[int] = []
            with pytest.raises(ConnectionClosed):
                while True:
                    push = await slow.push()
                    assert push["epoch"] == epoch and push["data"] == payload
                    received.append(push["offset"])
            assert slow.ws.close_code == 4000
            assert received == list(range(1, len(received) + 1))
            assert len(received) < published
        async with client(url, client_ssl, max_size=2**22) as again:
            last = received[-1] if received else 0
            result = await again.result(
                "subscribe", channel="feed:big", since={"offset": last, "epoch": epoch}
            )
            assert result["recovered"] is True
            assert _offsets(result["publications"]) == list(range(last + 1, published + 1))


async def test_hub_close_disconnects_with_4001(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub()
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        await c.result("subscribe", channel="news")
        await hub.close()
        with pytest.raises(ConnectionClosed):
            await c.ws.recv()
        assert c.ws.close_code == 4001
        assert hub.stats.sessions == 0


async def test_hub_publish_validates(server_ssl: ssl.SSLContext) -> None:
    hub = _hub()
    async with hub:
        with pytest.raises(ValueError):
            await hub.publish("bad name", 1)
        with pytest.raises(ValueError):
            await hub.publish("nope:x", 1)
        with pytest.raises(ValueError):
            await hub.publish("news", float("nan"))
        assert isinstance(await hub.publish("news", 1), Publication)


# -- streams that restart or skip while subscribed ------------------------------------------


class _LossyBackplane(MemoryBackplane):
    """Loses the live delivery of offset 2, as a broker's pub/sub may under load."""

    def _deliver(self, channel: str, delivery: Delivery) -> None:
        if isinstance(delivery, Publication) and delivery.offset == 2:
            return
        super()._deliver(channel, delivery)


async def test_a_gap_in_live_delivery_closes_with_4002_and_resume_fills_it(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = _hub(_LossyBackplane())
    async with serving(hub, server_ssl) as url:
        async with client(url, client_ssl) as c:
            await c.result("subscribe", channel="feed:gap")
            for n in range(3):
                await hub.publish("feed:gap", n)
            first = await c.push()
            assert first["offset"] == 1
            with pytest.raises(ConnectionClosed):
                await c.push()
            assert c.ws.close_code == 4002
        async with client(url, client_ssl) as c:
            since = {"offset": 1, "epoch": first["epoch"]}
            result = await c.result("subscribe", channel="feed:gap", since=since)
            assert result["recovered"] is True
            assert _offsets(result["publications"]) == [2, 3]


async def test_a_stream_that_expires_while_subscribed_goes_on_in_a_new_epoch(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    clock = ManualClock()
    hub = _hub(MemoryBackplane(MemoryStore(clock=clock)))
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        await c.result("subscribe", channel="feed:ttl")
        old = await hub.publish("feed:ttl", "old")
        assert (await c.push())["epoch"] == old.epoch
        clock.advance(601)  # past the namespace's history_ttl: the stream is forgotten
        new = await hub.publish("feed:ttl", "new")
        assert (new.offset, new.epoch != old.epoch) == (1, True)
        push = await c.push()
        assert (push["offset"], push["epoch"], push["data"]) == (1, new.epoch, "new")


def test_hub_limits_are_validated() -> None:
    for bad in ({"max_channels": 0}, {"queue_size": 0}):
        with pytest.raises(ValueError):
            HubLimits(**bad)


def test_backplane_from_url() -> None:
    assert isinstance(backplane_from_url("memory://"), MemoryBackplane)
    assert type(backplane_from_url("redis://localhost:6379/0")).__name__ == "RedisBackplane"
    with pytest.raises(ValueError, match="unknown backplane"):
        backplane_from_url("carrier-pigeon://coop")


class _BuggyBackplane(MemoryBackplane):
    """Its first history read fails with a bug, not a BackplaneError."""

    failures = 1

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug in the backplane")
        return await super().history(channel, since=since, limit=limit)


async def test_an_unexpected_failure_answers_100_and_serves_on(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    backplane = _BuggyBackplane()
    hub = _hub(backplane)
    async with serving(hub, server_ssl) as url, client(url, client_ssl) as c:
        assert await c.error("subscribe", channel="news") == 100
        assert backplane.subscriptions() == {}
        assert hub.stats.subscriptions == 0
        await c.result("subscribe", channel="news")
        assert backplane.subscriptions() == {"news": 1}
        assert hub.stats.subscriptions == 1
    assert hub.stats.subscriptions == 0
