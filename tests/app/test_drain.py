"""Graceful drain of a real ``wsskit serve`` on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import ConnectionClosed as PeerConnectionClosed

from tests.serve_process import ServeProcess
from wsskit.app.drain import DrainPolicy
from wsskit.app.settings import ConfigError, load_file

CHANNELS = "wsskit.channels.v1"


async def _closed_at(ws: ClientConnection) -> tuple[float, int | None]:
    # When the server's Close arrived (monotonic clock) and its code.
    with pytest.raises(PeerConnectionClosed) as info:
        while True:
            await ws.recv()
    rcvd = info.value.rcvd
    return time.monotonic(), None if rcvd is None else rcvd.code


async def _connect(server: ServeProcess, path: str, count: int, **options: object) -> list[ClientConnection]:
    context = ssl.create_default_context(cafile=server.ca_path())
    uri = f"wss://127.0.0.1:{server.port}{path}"
    return [await peer_connect(uri, ssl=context, **options) for _ in range(count)]  # type: ignore[arg-type]


async def test_closes_are_spread_over_the_window(tmp_path: Path) -> None:
    window = 4.0
    server = ServeProcess(tmp_path, "--drain-window", str(window), "--drain-timeout", "30")
    clients = await _connect(server, "/echo", 20)
    try:
        waiting = [asyncio.ensure_future(_closed_at(ws)) for ws in clients]
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*waiting)
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
    finally:
        for ws in clients:
            await ws.close()
    assert {code for _, code in results} == {1001}
    offsets = sorted(at - signalled for at, _ in results)
    # Not all at once: most closes come after the first tenth of the window,
    # and the last comes more than halfway through it.
    early = [offset for offset in offsets if offset < window / 10]
    assert len(early) <= 5, offsets
    assert offsets[-1] > window / 2, offsets
    assert any("closing 20 connections over 4.0 s" in line for line in server.lines + _rest(server))


def _rest(server: ServeProcess) -> list[str]:
    # The lines printed after the process ended.
    assert server.proc.stderr is not None
    rest = [line.rstrip("\n") for line in server.proc.stderr]
    server.lines.extend(rest)
    return rest


async def test_channel_sessions_get_4001_and_others_1001(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--drain-window", "1")
    echo = await _connect(server, "/echo", 2)
    channels = await _connect(server, "/channels", 2, subprotocols=[CHANNELS])
    try:
        waiting = [asyncio.ensure_future(_closed_at(ws)) for ws in echo + channels]
        server.proc.send_signal(signal.SIGTERM)
        codes = [code for _, code in await asyncio.gather(*waiting)]
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
    finally:
        for ws in echo + channels:
            await ws.close()
    assert codes == [1001, 1001, 4001, 4001]


async def test_listener_closes_while_connections_drain(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--drain-window", "30", "--drain-timeout", "60")
    clients = await _connect(server, "/echo", 3)
    try:
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait_for, "stopped accepting")
        # The process still runs (its clients are being closed one by one),
        # yet the port refuses new connections.
        assert server.proc.poll() is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        for ws in clients:
            await ws.close()
        assert await asyncio.to_thread(server.stop, signal.SIGINT) == 0


async def test_second_signal_closes_everything_now(tmp_path: Path) -> None:
    # A window of 120 s: only the second signal can end this drain in time.
    server = ServeProcess(tmp_path, "--drain-window", "120", "--drain-timeout", "240")
    clients = await _connect(server, "/echo", 5)
    try:
        waiting = [asyncio.ensure_future(_closed_at(ws)) for ws in clients]
        server.proc.send_signal(signal.SIGTERM)
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1  # the first close comes at once, the others are spread
        server.proc.send_signal(signal.SIGTERM)
        codes = [code for _, code in await asyncio.gather(*waiting)]
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
    finally:
        for ws in clients:
            await ws.close()
    assert codes == [1001] * 5
    assert any("second signal" in line for line in server.lines + _rest(server))


async def test_drain_timeout_aborts_clients_that_never_close(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--drain-window", "0", "--drain-timeout", "2")
    context = ssl.create_default_context(cafile=server.ca_path())
    # A client that completes the upgrade and then reads nothing: the
    # server's Close is never answered.
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    stream = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        stream.sendall(
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode("ascii")
        )
        assert stream.recv(65536).startswith(b"HTTP/1.1 101 ")
        server.proc.send_signal(signal.SIGTERM)
        # Exits 0 before the 10 s close timeout of the connection itself would end it.
        assert await asyncio.to_thread(server.proc.wait, 9) == 0
    finally:
        stream.close()
    assert any("drain timeout: aborting 1 connections" in line for line in server.lines + _rest(server))


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        DrainPolicy(timeout=0)
    with pytest.raises(ValueError):
        DrainPolicy(window=-1)
    assert DrainPolicy() == DrainPolicy(0.0, 10.0, 30.0)


def test_zero_timeout_is_refused_on_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsskit", "serve", "--drain-timeout", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"WSSKIT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "--drain-timeout must be more than 0" in result.stderr


def test_drain_and_workers_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "wsskit.toml"
    path.write_text("workers = 3\n[drain]\ndelay = 2\nwindow = 5.5\ntimeout = 40\n")
    values = load_file(path, {})
    assert values == {"workers": 3, "drain_delay": 2.0, "drain_window": 5.5, "drain_timeout": 40.0}
    path.write_text("[drain]\nspread = 3\n")
    with pytest.raises(ConfigError, match=r"drain\.spread"):
        load_file(path, {})
    path.write_text("[drain]\ntimeout = 0\n")
    with pytest.raises(ConfigError, match=r"drain\.timeout"):
        load_file(path, {})
