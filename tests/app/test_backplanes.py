"""Two `wsskit serve` processes sharing a broker: a subscriber on node A gets what is published on node B."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection as PeerConnection
from websockets.asyncio.client import connect as peer_connect

from tests.channels.nats_server import NatsServer, nats_server_binary
from tests.channels.redis_server import RedisServer, redis_server_binary
from tests.serve_process import ServeProcess

SUBPROTOCOL = "wsskit.channels.v1"


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    server = RedisServer(redis_server_binary())
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = NatsServer(nats_server_binary(), tmp_path / "nats")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def _command(ws: PeerConnection, message: dict[str, object]) -> dict[str, object]:
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("id") == message["id"]:
            return dict(reply)


async def _next_pub(ws: PeerConnection) -> dict[str, object]:
    while True:
        push = json.loads(await ws.recv())
        if push.get("push") == "pub":
            return dict(push)


async def _across_two_nodes(tmp_path: Path, backplane: str) -> None:
    home = tmp_path / "home"  # one dev CA for both nodes
    nodes = [ServeProcess(tmp_path, "--backplane", backplane, "--cert-dir", str(home)) for _ in range(2)]
    try:
        context = ssl.create_default_context(cafile=nodes[0].ca_path())
        a, b = (f"wss://127.0.0.1:{node.port}/channels" for node in nodes)
        async with (
            peer_connect(a, ssl=context, subprotocols=[SUBPROTOCOL]) as alice,
            peer_connect(b, ssl=context, subprotocols=[SUBPROTOCOL]) as bob,
        ):
            reply = await _command(alice, {"id": 1, "cmd": "subscribe", "channel": "chat:room"})
            assert "result" in reply, reply
            for i in range(20):
                sent = {"id": 10 + i, "cmd": "publish", "channel": "chat:room", "data": {"n": i}}
                assert "result" in await _command(bob, sent)
            pushes = [await _next_pub(alice) for _ in range(20)]
            assert [push["data"] for push in pushes] == [{"n": i} for i in range(20)]
            offsets = [push["offset"] for push in pushes]
            assert offsets == list(range(offsets[0], offsets[0] + 20))  # type: ignore[call-overload]
            # Node A remembers nothing itself: its history comes from the broker.
            history = await _command(alice, {"id": 2, "cmd": "history", "channel": "chat:room"})
            result = history["result"]
            assert isinstance(result, dict) and len(result["publications"]) == 20
    finally:
        for node in nodes:
            assert node.stop() == 0


async def test_two_nodes_share_redis(tmp_path: Path, redis_url: str) -> None:
    await _across_two_nodes(tmp_path, redis_url)


async def test_two_nodes_share_nats(tmp_path: Path, nats_url: str) -> None:
    await _across_two_nodes(tmp_path, nats_url)
