"""``GET /metrics`` of a real ``wsskit serve``: counts move with real traffic."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import ConnectionClosed as PeerConnectionClosed

from tests.serve_process import ServeProcess, free_port
from wsskit.channels import Client

from .test_pages import get

# Long enough for a loaded machine; the loops end as soon as the value shows.
DEADLINE = 30.0


def scrape(server: ServeProcess) -> dict[str, float]:
    """The samples of ``/metrics``: ``'name{labels}' -> value`` (labels sorted as served)."""
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def wait_for_sample(server: ServeProcess, name: str, at_least: float = 1.0) -> dict[str, float]:
    """Scrape until ``name`` reaches ``at_least``; return that scrape."""
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(server)
        if samples.get(name, 0.0) >= at_least or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def _context(server: ServeProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.ca_path())


@pytest.fixture
def served(tmp_path: Path) -> ServeProcess:
    server = ServeProcess(tmp_path, "--message-rate", "5")
    yield server
    if server.proc.poll() is None:
        server.stop()


async def test_traffic_moves_the_counters(served: ServeProcess) -> None:
    before = scrape(served)
    assert before['wsskit_connections_open{worker="0"}'] == 0
    assert 'wsskit_messages_total{direction="in",worker="0"}' not in before
    async with peer_connect(f"wss://127.0.0.1:{served.port}/echo", ssl=_context(served)) as ws:
        for text in ("one", "two", "three"):
            await ws.send(text)
            assert await ws.recv() == text
        during = scrape(served)
        assert during['wsskit_connections_open{worker="0"}'] == 1
        assert during['wsskit_tls_connections_open{version="TLSv1.3",worker="0"}'] == 1
    after = wait_for_sample(served, 'wsskit_close_codes_total{code="1000",worker="0"}')
    assert after['wsskit_close_codes_total{code="1000",worker="0"}'] == 1
    assert after['wsskit_connections_total{worker="0"}'] == 1
    assert after['wsskit_connections_open{worker="0"}'] == 0
    assert after['wsskit_tls_connections_open{version="TLSv1.3",worker="0"}'] == 0
    assert after['wsskit_handshakes_total{result="accepted",status="101",worker="0"}'] == 1
    assert after['wsskit_messages_total{direction="in",worker="0"}'] == 3
    assert after['wsskit_messages_total{direction="out",worker="0"}'] == 3
    # Bytes on the wire: at least the payloads and their 2-byte (out) and
    # 6-byte masked (in) headers; in also counts the opening handshake.
    payload = len("one") + len("two") + len("three")
    assert after['wsskit_bytes_total{direction="out",worker="0"}'] >= payload + 3 * 2
    assert after['wsskit_bytes_total{direction="in",worker="0"}'] >= payload + 3 * 6 + 100


async def test_rejected_handshakes_are_counted_by_status(served: ServeProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with peer_connect(
            f"wss://127.0.0.1:{served.port}/echo", ssl=_context(served), origin="https://evil.example"
        ):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        async with peer_connect(f"wss://127.0.0.1:{served.port}/nowhere", ssl=_context(served)):
            pass
    samples = scrape(served)
    assert samples['wsskit_handshakes_total{result="rejected",status="403",worker="0"}'] == 1
    assert samples['wsskit_handshakes_total{result="rejected",status="404",worker="0"}'] == 1
    assert 'wsskit_handshakes_total{result="accepted",status="101",worker="0"}' not in samples


async def test_message_rate_limit_hits_are_counted(served: ServeProcess) -> None:
    # --message-rate 5: a burst of 50 messages is over it; the server closes with 1008.
    async with peer_connect(f"wss://127.0.0.1:{served.port}/echo", ssl=_context(served)) as ws:
        with pytest.raises(PeerConnectionClosed):
            for number in range(50):
                await ws.send(str(number))
            while True:
                await ws.recv()
    assert ws.close_code == 1008
    samples = wait_for_sample(served, 'wsskit_rate_limit_hits_total{kind="message",worker="0"}')
    assert samples['wsskit_rate_limit_hits_total{kind="message",worker="0"}'] == 1
    assert samples['wsskit_close_codes_total{code="1008",worker="0"}'] == 1


async def test_channel_publishes_time_the_backplane(served: ServeProcess) -> None:
    # Publications through /channels are timed; nothing else publishes here
    # (no API tokens: the dashboard and its snapshots are off).
    assert scrape(served).get('wsskit_backplane_publish_seconds_count{worker="0"}', 0) == 0
    async with Client(
        f"wss://127.0.0.1:{served.port}/channels", ssl=_context(served), reconnect=False
    ) as client:
        for number in range(3):
            await client.publish("chat:metrics", {"n": number})
    samples = wait_for_sample(served, 'wsskit_backplane_publish_seconds_count{worker="0"}', at_least=3)
    assert samples['wsskit_backplane_publish_seconds_count{worker="0"}'] == 3
    assert samples['wsskit_backplane_publish_seconds_sum{worker="0"}'] > 0
    assert samples.get('wsskit_backplane_errors_total{worker="0"}', 0) == 0


async def test_workers_share_one_view_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes standing for two workers write into one folder; either
    # one's /metrics shows both, each with its worker label.
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    servers = []
    try:
        for worker in ("1", "2"):
            monkeypatch.setenv("WSSKIT_WORKER", worker)
            servers.append(ServeProcess(tmp_path, "--cert-dir", str(tmp_path / "ca")))
        for server in servers:
            async with peer_connect(f"wss://127.0.0.1:{server.port}/echo", ssl=_context(server)) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
        samples = wait_for_sample(servers[0], 'wsskit_close_codes_total{code="1000",worker="2"}')
        for worker in ("1", "2"):
            assert samples[f'wsskit_connections_total{{worker="{worker}"}}'] == 1
            assert samples[f'wsskit_messages_total{{direction="in",worker="{worker}"}}'] == 1
            assert samples[f'wsskit_close_codes_total{{code="1000",worker="{worker}"}}'] == 1
        other = scrape(servers[1])
        assert other['wsskit_connections_total{worker="1"}'] == 1
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WSSKIT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1", "WSSKIT_WORKER": "4"}
    process = subprocess.Popen(
        [sys.executable, "-m", "wsskit", "serve", "--no-tls", "--port", str(port), "--log-format", "json"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    entries = []
    try:
        for line in process.stderr:
            entries.append(json.loads(line))
            if entries[-1]["message"].startswith("serving "):
                break
    finally:
        process.terminate()
        process.wait(timeout=15)
    serving = entries[-1]
    assert serving["level"] == "info" and serving["logger"] == "wsskit.app"
    assert serving["message"].startswith(f"serving ws://127.0.0.1:{port}")
    assert serving["worker"] == "4"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", serving["time"])


async def test_connection_counters_count_whole_messages_and_wire_bytes() -> None:
    # The plain integers the metrics fold: a fragmented message counts once,
    # bytes count frames (2-byte headers from the server, 6-byte masked
    # ones from the client, for payloads under 126 bytes).
    from tests.asyncio.raw import port_of
    from wsskit.asyncio import ServerConnection, connect, serve

    seen: list[ServerConnection] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws)
        assert await ws.recv() == "abcdef"  # three fragments, one message
        await ws.send("xy")
        await ws.send(["x", "y", "z"])  # one message in three frames
        await done.wait()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        url = f"ws://127.0.0.1:{port_of(server)}/"
        async with connect(url, ping_interval=None, compression=None) as client:
            handshake_out = client.bytes_sent
            await client.send(["ab", "cd", "ef"])
            assert await client.recv() == "xy"
            assert await client.recv() == "xyz"
            (ws,) = seen
            assert ws.messages_received == 1 and client.messages_sent == 1
            assert ws.messages_sent == 2 and client.messages_received == 2
            assert client.bytes_sent - handshake_out == 3 * (6 + 2)
            assert ws.bytes_sent == (2 + 2) + 3 * (2 + 1)
            assert ws.bytes_received >= client.bytes_sent - handshake_out
            done.set()
