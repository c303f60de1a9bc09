"""``/dashboard/ws`` on a real ``wsskit serve``: API-token auth, snapshots, one series per node."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as peer_connect
from websockets.typing import Subprotocol

from tests.channels.redis_server import RedisServer
from tests.serve_process import ServeProcess
from wsskit.app.dashboard import SYSTEM_CHANNEL

TOKEN = "dashboard-token-for-tests-0003"
# Generous: snapshots come once a second on a loaded machine.
TIMEOUT = 30.0


def _context(server: ServeProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.ca_path())


def _url(server: ServeProcess) -> str:
    return f"wss://127.0.0.1:{server.port}/dashboard/ws"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path_factory.mktemp("dashboard"), "--api-token", TOKEN)
    yield server
    assert server.stop() == 0


async def _stats(ws: Any, condition: Any = lambda message: True) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "stats" and condition(message):
                return message  # type: ignore[no-any-return]

    return await asyncio.wait_for(wait(), TIMEOUT)


async def test_a_valid_token_gets_live_snapshots(served: ServeProcess) -> None:
    async with peer_connect(_url(served), ssl=_context(served)) as ws:
        await ws.send(json.dumps({"token": TOKEN}))
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and "worker 0" in hello["node"]
        stats = await _stats(ws)
        snapshot = stats["nodes"][hello["node"]]
        # This very connection is open, over TLS 1.3.
        assert snapshot["connections"] >= 1
        assert snapshot["tls"].get("TLSv1.3", 0) >= 1, snapshot
        assert set(snapshot) >= {
            "messages_in",
            "messages_out",
            "bytes_in",
            "bytes_out",
            "channels",
            "close_codes",
        }
        # The token message itself was counted as a message in.
        later = await _stats(ws, lambda m: m["nodes"][hello["node"]]["time"] > snapshot["time"])
        assert later["nodes"][hello["node"]]["messages_in"] >= 1


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (json.dumps({"token": "wrong-token-0123456789"}), "unauthorized"),
        (json.dumps({"nothing": 1}), 'send {"token": ...} first'),
        ("not json", 'send {"token": ...} first'),
        (b"\x00binary", 'send {"token": ...} first'),
    ],
)
async def test_no_data_without_a_valid_token(served: ServeProcess, first: str | bytes, reason: str) -> None:
    async with peer_connect(_url(served), ssl=_context(served)) as ws:
        await ws.send(first)
        with pytest.raises(websockets.ConnectionClosedError):
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            pytest.fail(f"received data without a valid token: {message!r}")
    assert ws.close_code == 1008
    assert ws.close_reason == reason


async def test_another_origin_is_refused(served: ServeProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with peer_connect(_url(served), ssl=_context(served), origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_dashboard_is_off_without_api_tokens(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path)
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with peer_connect(_url(server), ssl=_context(server)):
                pass
        assert refused.value.response.status_code == 404
    finally:
        server.stop()


async def test_channel_clients_cannot_read_the_system_channel(served: ServeProcess) -> None:
    async with peer_connect(
        f"wss://127.0.0.1:{served.port}/channels",
        ssl=_context(served),
        subprotocols=[Subprotocol("wsskit.channels.v1")],
    ) as ws:
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "channel": SYSTEM_CHANNEL}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert reply["id"] == 1
    assert reply["error"]["code"] == 104  # no namespace serves it


async def test_one_series_per_node_over_a_shared_backplane(tmp_path: Path, redis: RedisServer) -> None:
    nodes = [
        ServeProcess(
            tmp_path, "--api-token", TOKEN, "--backplane", redis.url, "--cert-dir", str(tmp_path / "ca")
        )
        for _ in range(2)
    ]
    try:
        # Traffic on the second node only.
        async with peer_connect(f"wss://127.0.0.1:{nodes[1].port}/echo", ssl=_context(nodes[1])) as echo:
            for _ in range(3):
                await echo.send("x")
                await echo.recv()
        async with peer_connect(_url(nodes[0]), ssl=_context(nodes[0])) as ws:
            await ws.send(json.dumps({"token": TOKEN}))
            hello = json.loads(await ws.recv())
            stats = await _stats(
                ws,
                lambda m: (
                    len(m["nodes"]) == 2
                    and all(s["messages_in"] >= 3 for n, s in m["nodes"].items() if n != hello["node"])
                ),
            )
        own = stats["nodes"].pop(hello["node"])
        (other,) = stats["nodes"].values()
        assert other["node"] != own["node"]
        assert other["messages_in"] == 3 and other["messages_out"] == 3
        assert other["close_codes"] == {"1000": 1}
        assert own["messages_in"] >= 1  # the token
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
