"""wsskit.channels.Client over real TLS sockets against a real Hub (memory backplane)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.asyncio.raw import port_of
from tests.channels.conftest import TIMEOUT, TOKENS
from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.channels import (
    ClientInfo,
    Hub,
    MemoryBackplane,
    MemoryStore,
    Namespace,
    Publication,
    Retention,
)
from wsskit.channels.backplanes.base import DEFAULT_RETENTION
from wsskit.channels.client import ChannelError, ChannelMessage, Client, Subscription
from wsskit.channels.wire import SUBPROTOCOL, Position
from wsskit.exceptions import ConnectionClosed, InvalidState
from wsskit.guards.auth import AuthChain, AuthGuard, StaticTokenAuthenticator
from wsskit.reconnect import ReconnectPolicy

#: Reconnect soon: the tests wait for the reconnection, not for the clock.
FAST = ReconnectPolicy(first_delay=0.05, initial_delay=0.02, factor=2.0, max_delay=0.2)


def _namespaces() -> list[Namespace]:
    return [
        Namespace("", publish="authenticated"),
        Namespace("feed", history_size=5000, history_ttl=600, publish="any"),
        Namespace("chat", presence=True, join_leave=True, publish="authenticated", subscribe="authenticated"),
        Namespace("admins", subscribe=["root"]),
    ]


@asynccontextmanager
async def _serving(hub: Hub, server_ssl: ssl.SSLContext, port: int = 0) -> AsyncIterator[tuple[Server, str]]:
    guard = AuthGuard(
        AuthChain([StaticTokenAuthenticator({t: s for s, t in TOKENS.items()})], required=False)
    )
    async with (
        hub,
        serve(
            hub.handler,
            "127.0.0.1",
            port,
            ssl=server_ssl,
            guards=[guard],
            subprotocols=hub.subprotocols,
            ping_interval=None,
        ) as server,
    ):
        yield server, f"wss://127.0.0.1:{port_of(server)}/channels"


def _client(url: str, client_ssl: ssl.SSLContext, user: str | None = None, **options: Any) -> Client:
    options.setdefault("reconnect", FAST)
    token = TOKENS[user] if user is not None else None
    return Client(url, ssl=client_ssl, token=token, ping_interval=None, **options)


async def _get(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), TIMEOUT)


async def _kill(server: Server, code: int = 4000) -> int:
    """Close every connection of ``server`` with ``code``; return how many there were."""
    connections = list(server.connections)
    await asyncio.gather(*(c.close(code, "test") for c in connections))
    return len(connections)


class _Recorder:
    """Collects publications and connection events; wakes waiters on each."""

    def __init__(self) -> None:
        self.messages: list[ChannelMessage] = []
        self.recoveries: list[tuple[bool, int]] = []
        self.disconnects: list[tuple[int, str]] = []
        self.reconnecting: list[tuple[int, float]] = []
        self.connects = 0
        self.changed = asyncio.Condition()

    async def _note(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def on_publication(self, message: ChannelMessage) -> None:  # async on purpose
        self.messages.append(message)
        await self._note()

    async def on_recovery(self, recovered: bool, missed: int) -> None:
        self.recoveries.append((recovered, missed))
        await self._note()

    async def on_connect(self) -> None:
        self.connects += 1
        await self._note()

    def on_disconnect(self, code: int, reason: str) -> None:  # sync on purpose
        self.disconnects.append((code, reason))

    def on_reconnecting(self, attempt: int, delay: float) -> None:
        self.reconnecting.append((attempt, delay))

    def events(self) -> dict[str, Any]:
        return {
            "on_connect": self.on_connect,
            "on_disconnect": self.on_disconnect,
            "on_reconnecting": self.on_reconnecting,
        }

    async def until(self, predicate: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT)


def _check_stream(messages: list[ChannelMessage], data: list[Any]) -> None:
    assert [m.data for m in messages] == data
    offsets = [m.offset for m in messages]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


# -- commands ---------------------------------------------------------------------------


async def test_subscribe_publish_history_presence_ping(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    received: asyncio.Queue[ChannelMessage] = asyncio.Queue()
    joins: asyncio.Queue[ClientInfo] = asyncio.Queue()
    async with _serving(hub, server_ssl) as (_, url), _client(url, client_ssl, "alice") as client:
        assert client.connected
        sub = await client.subscribe("feed:news", received.put_nowait)
        assert isinstance(sub, Subscription) and client.subscriptions["feed:news"] is sub
        assert sub.offset == 0 and sub.epoch is not None
        position = await client.publish("feed:news", {"text": "hello"})
        assert position == Position(1, sub.epoch)
        assert await _get(received) == ChannelMessage("feed:news", 1, sub.epoch, {"text": "hello"})
        assert sub.position == position
        backend = await hub.publish("feed:news", [1, 2])
        assert (await _get(received)).offset == backend.offset == 2

        page = await client.history("feed:news", limit=1)
        assert page.recovered is True and page.offset == 2
        assert [(m.offset, m.data) for m in page.publications] == [(2, [1, 2])]
        page = await client.history("feed:news", since=Position(0, sub.epoch))
        assert [m.offset for m in page.publications] == [1, 2]

        chat = await client.subscribe("chat:lobby", lambda m: None, on_join=joins.put_nowait)
        me = await _get(joins)
        assert me.user == "alice"
        assert await client.presence("chat:lobby") == [me]
        assert await client.ping() >= 0

        await sub.unsubscribe()
        assert not sub.active and "feed:news" not in client.subscriptions
        await hub.publish("feed:news", "unheard")
        await client.ping()  # the push would have come before this reply
        assert received.empty()
        assert set(client.subscriptions) == {"chat:lobby"} and chat.active
    with pytest.raises(ConnectionClosed):
        await client.ping()


async def test_error_replies_raise_channel_errors(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    async with _serving(hub, server_ssl) as (_, url), _client(url, client_ssl) as client:
        cases = [
            (client.subscribe("nowhere:x", print), 104),
            (client.subscribe("admins:x", print), 103),
            (client.subscribe("chat:x", print), 103),  # anonymous
            (client.publish("news", "x"), 103),
            (client.presence("feed:x"), 102),  # presence is off there
            (client.history("feed:x", limit=5000), 105),
        ]
        for command, code in cases:
            with pytest.raises(ChannelError) as caught:
                await command
            assert caught.value.code == code, caught.value
        assert client.subscriptions == {}
        await client.subscribe("feed:x", print)
        with pytest.raises(ChannelError) as caught:
            await client.subscribe("feed:x", print)
        assert caught.value.code == 106
        with pytest.raises(ValueError, match="channel"):
            await client.publish("bad channel", 1)
        with pytest.raises(ValueError):
            await client.publish("feed:x", float("nan"))
        # The connection survived all of it.
        assert await client.ping() >= 0


async def test_unusable_before_connect_and_not_twice(client_ssl: ssl.SSLContext) -> None:
    client = Client("wss://127.0.0.1:9/channels", ssl=client_ssl)
    with pytest.raises(InvalidState):
        await client.ping()
    with pytest.raises(OSError):
        await client.connect()
    with pytest.raises(InvalidState):
        await client.connect()
    with pytest.raises(TypeError):
        Client("wss://h/channels", reconnect=3)  # type: ignore[arg-type]


# -- resuming ---------------------------------------------------------------------------


async def test_resume_after_server_kills_the_connection_while_1000_are_published(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    rec = _Recorder()
    async with (
        _serving(hub, server_ssl) as (server, url),
        _client(url, client_ssl, **rec.events()) as client,
    ):
        await client.subscribe("feed:live", rec.on_publication, on_recovery=rec.on_recovery)
        kills = 0
        for n in range(1000):
            if n in (150, 500, 800):
                # Dropped with "slow consumer"; the next 100 are published
                # before the client can even notice.
                assert await _kill(server) == 1
                kills += 1
            await hub.publish("feed:live", n)
            if n in (250, 600, 900):
                await rec.until(lambda k=kills: rec.connects == k + 1)
        await rec.until(lambda: len(rec.messages) >= 1000)
        await client.ping()
        _check_stream(rec.messages, list(range(1000)))
        assert rec.messages[0].offset == 1
        assert [code for code, _ in rec.disconnects] == [4000, 4000, 4000]
        assert len(rec.recoveries) == 3
        assert all(recovered for recovered, _ in rec.recoveries)
        # Each time, at least the 100 published before the client noticed were recovered.
        assert all(missed >= 100 for _, missed in rec.recoveries), rec.recoveries
        assert len(rec.reconnecting) >= 3
        assert client.subscriptions["feed:live"].position == Position(1000, rec.messages[0].epoch)


async def _offline_publish(store: MemoryStore, channel: str, items: list[Any]) -> list[Publication]:
    # Publish to the store while no server runs, as another node would.
    async with Hub(MemoryBackplane(store), _namespaces()) as offline:
        return [await offline.publish(channel, item) for item in items]


async def test_resume_across_a_server_restart_on_the_same_port(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    rec = _Recorder()
    async with _serving(Hub(MemoryBackplane(store), _namespaces()), server_ssl) as (_, url):
        port = int(url.split(":")[2].split("/")[0])
        client = _client(url, client_ssl, **rec.events())
        await client.connect()
        await client.subscribe("feed:r", rec.on_publication, on_recovery=rec.on_recovery)
        await client.publish("feed:r", "first")
        await rec.until(lambda: len(rec.messages) == 1)
    try:
        await rec.until(lambda: len(rec.disconnects) == 1)
        assert rec.disconnects[0][0] in (1001, 4001)
        await _offline_publish(store, "feed:r", list(range(300)))
        async with _serving(Hub(MemoryBackplane(store), _namespaces()), server_ssl, port) as (_, url2):
            assert url2 == url
            await rec.until(lambda: rec.recoveries == [(True, 300)])
            await client.publish("feed:r", "live")
            await rec.until(lambda: len(rec.messages) == 302)
            _check_stream(rec.messages, ["first", *range(300), "live"])
            assert rec.connects == 2
            assert len(rec.reconnecting) >= 1  # refused attempts included
    finally:
        await client.close()


async def test_recovered_false_after_the_history_is_lost(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    rec = _Recorder()
    async with _serving(Hub(MemoryBackplane(store), _namespaces()), server_ssl) as (_, url):
        port = int(url.split(":")[2].split("/")[0])
        client = _client(url, client_ssl, **rec.events())
        await client.connect()
        sub = await client.subscribe("feed:lost", rec.on_publication, on_recovery=rec.on_recovery)
        old = await client.publish("feed:lost", "old")
        await rec.until(lambda: len(rec.messages) == 1)
    try:
        store.clear()  # the broker restarted without persistence
        await _offline_publish(store, "feed:lost", ["gone"])
        async with _serving(Hub(MemoryBackplane(store), _namespaces()), server_ssl, port):
            await rec.until(lambda: rec.recoveries == [(False, 0)])
            assert sub.position is not None and sub.position.epoch != old.epoch
            new = await client.publish("feed:lost", "new")
            await rec.until(lambda: len(rec.messages) == 2)
            # Nothing of the lost stream was delivered; the new stream goes on.
            assert [m.data for m in rec.messages] == ["old", "new"]
            assert rec.messages[1].epoch == new.epoch == sub.position.epoch
    finally:
        await client.close()


async def test_recovery_from_a_given_position(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    rec = _Recorder()
    async with _serving(hub, server_ssl) as (_, url), _client(url, client_ssl) as client:
        pubs = [await hub.publish("feed:p", n) for n in range(5)]
        since = Position(pubs[1].offset, pubs[1].epoch)
        await client.subscribe("feed:p", rec.on_publication, on_recovery=rec.on_recovery, since=since)
        await rec.until(lambda: rec.recoveries == [(True, 3)])
        assert [m.data for m in rec.messages] == [2, 3, 4]


class _DropsFirstReply(MemoryBackplane):
    """Stores the first keyed publish, then drops every connection before the reply goes out."""

    def __init__(self) -> None:
        super().__init__()
        self.server: Server | None = None
        self.keys: list[str | None] = []

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Publication:
        publication = await super().publish(
            channel, data, idempotency_key=idempotency_key, retention=retention
        )
        self.keys.append(idempotency_key)
        if len(self.keys) == 1:
            assert self.server is not None
            assert await _kill(self.server) == 1
        return publication


async def test_publish_retried_after_a_reconnect_is_stored_once(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    backplane = _DropsFirstReply()
    hub = Hub(backplane, _namespaces())
    rec = _Recorder()
    async with (
        _serving(hub, server_ssl) as (server, url),
        _client(url, client_ssl, **rec.events()) as client,
    ):
        backplane.server = server
        position = await client.publish("feed:once", {"n": 1})
        await rec.until(lambda: rec.connects == 2)
        assert rec.disconnects == [(4000, "test")]
        assert len(backplane.keys) == 2 and backplane.keys[0] == backplane.keys[1] is not None
        history = await hub.history("feed:once")
        assert [(p.offset, p.data) for p in history.publications] == [(1, {"n": 1})]
        assert position == Position(1, history.position.epoch)


async def test_a_close_code_that_forbids_reconnecting_ends_the_client(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    rec = _Recorder()
    async with _serving(hub, server_ssl) as (server, url):
        client = _client(url, client_ssl, **rec.events())
        await client.connect()
        sub = await client.subscribe("feed:x", rec.on_publication)
        await _kill(server, 4003)  # permission revoked
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert isinstance(client.failure, ConnectionClosed) and client.failure.code == 4003
        assert not sub.active and client.subscriptions == {}
        with pytest.raises(ConnectionClosed) as caught:
            await client.publish("feed:x", 1)
        assert caught.value.code == 4003
        await client.close()
        assert rec.disconnects == [(4003, "test")] and rec.reconnecting == []


async def test_without_reconnect_the_first_loss_ends_the_client(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    async with (
        _serving(hub, server_ssl) as (server, url),
        _client(url, client_ssl, reconnect=False) as client,
    ):
        await _kill(server, 4000)
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert isinstance(client.failure, ConnectionClosed) and client.failure.code == 4000


# -- against a scripted server: what a Hub never does -------------------------------------


@asynccontextmanager
async def _scripted(
    server_ssl: ssl.SSLContext, handler: Callable[[ServerConnection], Awaitable[None]]
) -> AsyncIterator[str]:
    async with serve(
        handler, "127.0.0.1", 0, ssl=server_ssl, subprotocols=[SUBPROTOCOL], ping_interval=None
    ) as server:
        yield f"wss://127.0.0.1:{port_of(server)}/channels"


async def _command(ws: ServerConnection) -> dict[str, Any]:
    message = await ws.recv()
    assert isinstance(message, str)
    command = json.loads(message)
    assert isinstance(command, dict)
    return command


def _pub(offset: int, data: Any, epoch: str = "e1") -> str:
    return json.dumps({"push": "pub", "channel": "c", "offset": offset, "epoch": epoch, "data": data})


async def test_duplicates_are_dropped_and_a_gap_makes_the_client_resume(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    sessions: list[dict[str, Any]] = []
    closes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        subscribe = await _command(ws)
        sessions.append(subscribe)
        result: dict[str, Any]
        if len(sessions) == 1:
            result = {"epoch": "e1", "offset": 0, "recovered": False, "publications": []}
            await ws.send(json.dumps({"id": subscribe["id"], "result": result}))
            for push in (_pub(1, "a"), _pub(1, "a again"), _pub(3, "c, after a gap")):
                await ws.send(push)
        else:
            publications = [{"offset": 2, "data": "b"}, {"offset": 3, "data": "c"}]
            result = {"epoch": "e1", "offset": 3, "recovered": True, "publications": publications}
            await ws.send(json.dumps({"id": subscribe["id"], "result": result}))
            await ws.send(_pub(4, "d"))
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
        closes.append(ws.close_code)

    rec = _Recorder()
    async with _scripted(server_ssl, handler) as url, _client(url, client_ssl) as client:
        await client.subscribe("c", rec.on_publication, on_recovery=rec.on_recovery)
        await rec.until(lambda: len(rec.messages) == 4)
        assert [m.data for m in rec.messages] == ["a", "b", "c", "d"]
        assert rec.recoveries == [(True, 2)]
        assert closes == [4002]
        assert "since" not in sessions[0]
        assert sessions[1]["since"] == {"offset": 1, "epoch": "e1"}


async def test_a_server_that_breaks_the_protocol_ends_the_client(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    closes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        await _command(ws)
        await ws.send("this is not JSON")
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
        closes.append(ws.close_code)

    async with _scripted(server_ssl, handler) as url, _client(url, client_ssl) as client:
        with pytest.raises(ConnectionClosed):
            await client.ping()
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert isinstance(client.failure, ConnectionClosed) and client.failure.code == 4008
        assert closes == [4008]
