"""Broker outages under a hub with live sessions, on a real Redis and a real NATS.

What must hold (issue 7, item 6, and "never a silent gap"):

- while the broker is down the hub is not ready, and every command that needs
  the broker fails loudly (error 108 on the wire, BackplaneError in the
  backend API);
- when it comes back, the hub is ready again and the same sessions work,
  without a restart;
- a broker that came back without its history makes every client subscribed
  across the restart resume (close 4002), and the resume says
  ``recovered: false``: no client ever sees a gap it was not told about;
- ``wsskit serve`` started while the broker is down serves (echo) and heals
  when the broker starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection as PeerConnection
from websockets.asyncio.client import connect as peer_connect
from websockets.typing import Subprotocol

from tests.asyncio.raw import port_of
from tests.channels.conftest import client, serving
from tests.channels.nats_server import NatsServer, nats_server_binary
from tests.channels.redis_server import RedisServer, redis_server_binary
from tests.serve_process import ServeProcess, free_port
from wsskit.asyncio import serve
from wsskit.channels import Backplane, ChannelMessage, Client, Hub, MemoryBackplane, MemoryStore, Namespace
from wsskit.channels.backplanes.nats import NatsBackplane
from wsskit.channels.backplanes.redis import RedisBackplane
from wsskit.exceptions import BackplaneError, ConnectionClosed
from wsskit.reconnect import ReconnectPolicy
from wsskit.testing.backplane import wait_until

#: Upper bound for a node to notice the broker left or came back (not a timing assertion).
RECOVERY_TIMEOUT = 30.0
#: Upper bound for `wsskit serve` to connect to a broker started late (its backoff is capped at 15 s).
SERVE_RECOVERY_TIMEOUT = 90.0

FAST = ReconnectPolicy(first_delay=0.05, initial_delay=0.05, factor=2.0, max_delay=0.5)


def _namespaces() -> list[Namespace]:
    return [Namespace("", publish="any"), Namespace("feed", publish="any", history_size=1000)]


def _channel() -> str:
    return f"feed:{secrets.token_hex(6)}"


@dataclass
class Broker:
    """A private broker the test can stop, and start again without its data."""

    name: str
    make_backplane: Callable[[], Backplane]
    stop: Callable[[], Awaitable[None]]
    start_without_data: Callable[[], Awaitable[None]]


@pytest.fixture(params=["redis", "nats"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    if request.param == "redis":
        redis = RedisServer(redis_server_binary())
        await redis.start()
        try:
            yield Broker(
                "redis",
                lambda: RedisBackplane(redis.url, reconnect_max_delay=0.5, timeout=2.0),
                redis.stop,
                redis.start,  # without persistence: every key is gone
            )
        finally:
            await redis.stop()
        return
    nats = NatsServer(nats_server_binary(), tmp_path / "nats")
    nats.start()

    async def stop() -> None:
        nats.stop()

    async def start_without_data() -> None:
        shutil.rmtree(nats.store, ignore_errors=True)
        nats.start()

    try:
        yield Broker(
            "nats",
            lambda: NatsBackplane(nats.url, reconnect_wait=0.05, timeout=2.0),
            stop,
            start_without_data,
        )
    finally:
        nats.stop()


# -- the hub on its own, over the memory backplane ----------------------------------------


def _ready(hub: Hub) -> bool:
    # Read through a call: the property changes under the test's feet, and a
    # type checker narrowing it after one assert would think the next unreachable.
    return hub.ready


class _LateBroker(MemoryBackplane):
    """A memory backplane whose broker refuses the first ``failures`` connections."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def start(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise BackplaneError(f"refused (attempt {self.attempts})")
        await super().start()


async def test_start_without_retry_still_fails_loudly() -> None:
    hub = Hub(_LateBroker(1), _namespaces())
    with pytest.raises(BackplaneError):
        await hub.start()
    assert _ready(hub) is False
    await hub.close()


async def test_a_hub_started_before_its_broker_retries_and_refuses_meanwhile(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsskit.channels")
    backplane = _LateBroker(3)
    hub = Hub(backplane, _namespaces(), retry_delay=0.2, retry_max_delay=0.4)
    channel = _channel()
    await hub.start(retry=True)  # does not raise
    try:
        assert _ready(hub) is False
        with pytest.raises(BackplaneError):
            await hub.publish(channel, 1)
        with pytest.raises(BackplaneError):
            await hub.history(channel)
        await asyncio.wait_for(hub.wait_started(), RECOVERY_TIMEOUT)
        assert _ready(hub) is True
        assert backplane.attempts == 4
        assert (await hub.publish(channel, 1)).offset == 1
    finally:
        await hub.close()
    assert _ready(hub) is False
    retries = [r for r in caplog.records if "broker is unreachable" in r.getMessage()]
    assert len(retries) == 3  # once per failed attempt
    assert all("retrying in" in r.getMessage() and r.exc_info is None for r in retries)
    assert all(r.levelno == logging.WARNING for r in retries)


async def test_sessions_get_108_until_the_broker_is_reached(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    backplane = _LateBroker(1_000_000)
    hub = Hub(backplane, _namespaces(), retry_delay=0.05, retry_max_delay=0.1)
    channel = _channel()
    await hub.start(retry=True)
    async with serve(
        hub.handler, "127.0.0.1", 0, ssl=server_ssl, subprotocols=hub.subprotocols, ping_interval=None
    ) as server:
        url = f"wss://127.0.0.1:{port_of(server)}/channels"
        try:
            async with client(url, client_ssl) as c:
                assert await c.error("subscribe", channel=channel) == 108
                assert await c.error("publish", channel=channel, data=1) == 108
                assert await c.error("history", channel=channel) == 108
                assert "result" in await c.call("ping")  # the session itself is fine
                backplane.failures = 0  # the broker is back
                await asyncio.wait_for(hub.wait_started(), RECOVERY_TIMEOUT)
                await c.result("subscribe", channel=channel)
                await c.result("publish", channel=channel, data="now")
                assert (await c.push())["data"] == "now"
        finally:
            await hub.close()


async def test_a_memory_restart_closes_only_the_sessions_of_affected_channels(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    hub = Hub(MemoryBackplane(store), _namespaces())
    async with (
        serving(hub, server_ssl) as url,
        client(url, client_ssl) as subscribed,
        client(url, client_ssl) as idle,
    ):
        channel = _channel()
        await subscribed.result("subscribe", channel=channel)
        store.set_available(False)
        assert _ready(hub) is False
        assert await idle.error("publish", channel=channel, data=1) == 108
        store.set_available(True)
        assert _ready(hub) is True
        store.restart()
        with pytest.raises(ConnectionClosed):
            await subscribed.push()
        assert subscribed.ws.close_code == 4002
        assert "result" in await idle.call("ping")  # subscribed to nothing: untouched


async def _publish_when_back(hub: Hub, channel: str, data: Any) -> Any:
    # Ready means connected; a broker just restarted (JetStream recovering its
    # store) may still refuse a first request. A refused publish stored nothing.
    for _ in range(20):
        try:
            return await hub.publish(channel, data)
        except BackplaneError:
            await asyncio.sleep(0.1)  # a pause between attempts, not a synchronisation
    return await hub.publish(channel, data)


async def test_an_outage_under_live_sessions_fails_loudly_and_heals(
    broker: Broker, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(broker.make_backplane(), _namespaces())
    channel, other_channel = _channel(), _channel()
    async with serving(hub, server_ssl) as url:
        assert _ready(hub) is True
        async with client(url, client_ssl) as subscriber, client(url, client_ssl) as other:
            subscribed = await subscriber.result("subscribe", channel=channel)
            before = [await hub.publish(channel, {"seq": n}) for n in range(5)]
            pushes = [await subscriber.push() for _ in range(5)]
            assert [p["data"]["seq"] for p in pushes] == list(range(5))

            await broker.stop()
            await wait_until(lambda: not hub.ready, "the hub sees the outage", RECOVERY_TIMEOUT)
            with pytest.raises(BackplaneError):
                await hub.publish(channel, {"seq": -1})
            # Loud on the wire too: 108, and nothing was published.
            assert await other.error("publish", channel=channel, data={"seq": -2}) == 108
            assert await other.error("subscribe", channel=other_channel) == 108
            assert await other.error("history", channel=channel) == 108

            await broker.start_without_data()
            await wait_until(lambda: hub.ready, "the hub is ready again", RECOVERY_TIMEOUT)
            # The history is gone: the subscriber is told to resume, before anything new.
            with pytest.raises(ConnectionClosed):
                while True:
                    push = await subscriber.push()
                    assert push["data"]["seq"] >= 0, push  # nothing from the outage
                    assert push["epoch"] == subscribed["epoch"], push  # nothing from the new stream
            assert subscriber.ws.close_code == 4002

            # The same session, not subscribed to the channel, works again.
            again = await other.result("subscribe", channel=other_channel)
            assert again["offset"] == 0
            after = [await _publish_when_back(hub, channel, {"seq": 5})]
            after += [await hub.publish(channel, {"seq": n}) for n in range(6, 10)]
            assert after[0].epoch != before[0].epoch
            assert [p.offset for p in after] == [1, 2, 3, 4, 5]

        async with client(url, client_ssl) as back:
            since = {"offset": pushes[-1]["offset"], "epoch": pushes[-1]["epoch"]}
            resumed = await back.result("subscribe", channel=channel, since=since)
            assert resumed["recovered"] is False
            assert resumed["publications"] == []
            assert (resumed["offset"], resumed["epoch"]) == (5, after[0].epoch)
            await hub.publish(channel, {"seq": 10})
            push = await back.push()
            assert (push["offset"], push["data"]) == (6, {"seq": 10})


class _Seen:
    """What a Python client's subscription saw, in order: messages and recoveries."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Condition()

    async def on_publication(self, message: ChannelMessage) -> None:
        self.events.append(("pub", message.data["seq"]))
        async with self.changed:
            self.changed.notify_all()

    async def on_recovery(self, recovered: bool, missed: int) -> None:
        self.events.append(("recovery", recovered))
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), RECOVERY_TIMEOUT)

    def seqs(self) -> list[int]:
        return [value for kind, value in self.events if kind == "pub"]

    def silent_gaps(self) -> list[tuple[int, int]]:
        """Pairs of consecutive messages with a gap between them and no ``recovered: false`` in between."""
        gaps: list[tuple[int, int]] = []
        last: int | None = None
        told = False
        for kind, value in self.events:
            if kind == "recovery":
                told = told or value is False
                continue
            if last is not None and value != last + 1 and not told:
                gaps.append((last, value))
            last, told = value, False
        return gaps


async def test_a_python_client_across_a_restart_without_history_is_told(
    broker: Broker, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    hub = Hub(broker.make_backplane(), _namespaces())
    channel = _channel()
    seen = _Seen()
    async with (
        serving(hub, server_ssl) as url,
        Client(url, ssl=client_ssl, reconnect=FAST, ping_interval=None) as python_client,
    ):
        await python_client.subscribe(channel, seen.on_publication, on_recovery=seen.on_recovery)
        for n in range(5):
            await hub.publish(channel, {"seq": n})
        await seen.until(lambda: len(seen.seqs()) == 5)

        await broker.stop()
        await wait_until(lambda: not hub.ready, "the hub sees the outage", RECOVERY_TIMEOUT)
        with pytest.raises(BackplaneError):
            await hub.publish(channel, {"seq": 5})  # refused: the sequence goes on from 5
        await broker.start_without_data()
        await wait_until(lambda: hub.ready, "the hub is ready again", RECOVERY_TIMEOUT)
        # The client is told before the new stream starts.
        await seen.until(lambda: ("recovery", False) in seen.events)
        await _publish_when_back(hub, channel, {"seq": 5})
        for n in range(6, 10):
            await hub.publish(channel, {"seq": n})
        await seen.until(lambda: len(seen.seqs()) >= 10)

    assert seen.seqs() == list(range(10))
    assert seen.events.index(("recovery", False)) == 5  # between 4 and 5
    assert seen.silent_gaps() == []


async def test_publications_lost_with_redis_are_never_a_silent_gap(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    # Node a misses publications (its pub/sub connection goes deaf) that only
    # Redis held, then Redis restarts without them: nobody can deliver them
    # any more, and the client on node a must be told so.
    redis = RedisServer(redis_server_binary())
    await redis.start()
    node_a = RedisBackplane(redis.url, reconnect_max_delay=0.5, timeout=2.0, probe_interval=3600)
    hub_a, hub_b = Hub(node_a, _namespaces()), Hub(RedisBackplane(redis.url, timeout=2.0), _namespaces())
    channel = _channel()
    seen = _Seen()
    try:
        async with (
            hub_b,
            serving(hub_a, server_ssl) as url,
            Client(url, ssl=client_ssl, reconnect=FAST, ping_interval=None) as python_client,
        ):
            await python_client.subscribe(channel, seen.on_publication, on_recovery=seen.on_recovery)
            for n in range(5):
                await hub_b.publish(channel, {"seq": n})
            await seen.until(lambda: len(seen.seqs()) == 5)
            conn = node_a._conn
            assert conn is not None
            await conn.send_command("UNSUBSCRIBE")  # deaf, and nobody notices yet
            for n in (5, 6):
                await hub_b.publish(channel, {"seq": n})  # in Redis only
            await redis.restart()  # and gone
            await wait_until(
                lambda: hub_a.ready and hub_b.ready, "both hubs are ready again", RECOVERY_TIMEOUT
            )
            await seen.until(lambda: ("recovery", False) in seen.events)
            await _publish_when_back(hub_b, channel, {"seq": 7})
            for n in (8, 9):
                await hub_b.publish(channel, {"seq": n})
            await seen.until(lambda: len(seen.seqs()) >= 8)
    finally:
        await redis.stop()
    assert seen.seqs() == [0, 1, 2, 3, 4, 7, 8, 9]
    assert seen.events[5] == ("recovery", False)
    assert seen.silent_gaps() == []


def test_silent_gaps_are_found() -> None:
    # The checker the tests above rely on finds a gap nobody was told about.
    seen = _Seen()
    seen.events = [("pub", 1), ("pub", 2), ("pub", 4), ("recovery", False), ("pub", 9)]
    assert seen.silent_gaps() == [(2, 4)]


# -- wsskit serve with the broker down at start ------------------------------------------------


async def _command(ws: PeerConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), RECOVERY_TIMEOUT))
        if reply.get("id") == message["id"]:
            return dict(reply)


async def _subscribe_when_ready(ws: PeerConnection, channel: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVE_RECOVERY_TIMEOUT
    attempt = 0
    while True:
        attempt += 1
        reply = await _command(ws, {"id": attempt, "cmd": "subscribe", "channel": channel})
        if "result" in reply:
            return reply
        assert reply["error"]["code"] == 108, reply  # unavailable, and only that
        if loop.time() > deadline:
            raise AssertionError(f"channels did not recover within {SERVE_RECOVERY_TIMEOUT} s")
        await asyncio.sleep(0.2)  # polling the server, not a timing assertion


async def _api_publish(
    port: int, context: ssl.SSLContext, token: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    # POST /api/publish over TLS; the status code and the whole answer.
    payload = json.dumps(body).encode()
    head = (
        f"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), RECOVERY_TIMEOUT)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


async def test_serve_with_the_broker_down_at_start_serves_and_recovers(tmp_path: Path) -> None:
    binary = redis_server_binary()
    port = free_port()
    api_token = secrets.token_urlsafe(32)
    node = ServeProcess(tmp_path, "--backplane", f"redis://127.0.0.1:{port}/0", "--api-token", api_token)
    redis = RedisServer(binary, port=port)
    try:
        assert node.proc.poll() is None
        warnings = [line for line in node.lines if "broker is unreachable" in line]
        assert warnings and "retrying in" in warnings[0], node.lines
        assert not any("Traceback" in line for line in node.lines), node.lines
        context = ssl.create_default_context(cafile=node.ca_path())
        base = f"wss://127.0.0.1:{node.port}"
        async with peer_connect(f"{base}/echo", ssl=context) as echo:
            await echo.send("still serving")
            assert await asyncio.wait_for(echo.recv(), RECOVERY_TIMEOUT) == "still serving"
        channel = f"chat:{secrets.token_hex(6)}"  # a namespace of `wsskit serve` open to all
        async with (
            peer_connect(
                f"{base}/channels", ssl=context, subprotocols=[Subprotocol("wsskit.channels.v1")]
            ) as subscriber,
            peer_connect(
                f"{base}/channels", ssl=context, subprotocols=[Subprotocol("wsskit.channels.v1")]
            ) as publisher,
        ):
            refused = await _command(subscriber, {"id": 1, "cmd": "subscribe", "channel": channel})
            assert refused.get("error", {}).get("code") == 108, refused
            refused = await _command(publisher, {"id": 1, "cmd": "publish", "channel": channel, "data": 0})
            assert refused.get("error", {}).get("code") == 108, refused
            status, answer = await _api_publish(
                node.port, context, api_token, {"channel": "alerts", "data": 0}
            )
            assert status == 503, answer

            await redis.start()
            subscribed = await _subscribe_when_ready(subscriber, channel)
            assert subscribed["result"]["offset"] == 0
            published = await _command(publisher, {"id": 2, "cmd": "publish", "channel": channel, "data": 1})
            assert published["result"]["offset"] == 1, published
            while True:
                push = json.loads(await asyncio.wait_for(subscriber.recv(), RECOVERY_TIMEOUT))
                if push.get("push") == "pub":
                    break
            assert (push["offset"], push["data"]) == (1, 1)
            status, answer = await _api_publish(
                node.port, context, api_token, {"channel": "alerts", "data": 1}
            )
            assert status == 200, answer
    finally:
        node.stop()
        await redis.stop()
    assert any("connected to the broker after" in line for line in node.lines), node.lines
