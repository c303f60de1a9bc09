"""Write and idle timeouts: a peer that stops reading is cut off; an idle connection is closed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.asyncio.raw import port_of, random_bytes, raw_client, read_frame
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import ConnectionClosedError, ConnectionClosedOK
from wsskit.protocol.frames import Opcode


async def test_a_peer_that_stops_reading_is_cut_off_after_write_timeout() -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def flood(ws: ServerConnection) -> None:
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        chunk = random_bytes(2**16)
        try:
            for _ in range(10_000):  # 640 MiB: the timeout must end this long before
                await ws.send(chunk)
        except ConnectionClosedError as exc:
            outcome.set_result(exc)

    async with (
        serve(flood, "127.0.0.1", 0, ping_interval=None, compression=None, write_timeout=0.3) as server,
        raw_client(port_of(server), rcvbuf=4096),
    ):
        error = await asyncio.wait_for(outcome, 30)
    assert isinstance(error, ConnectionClosedError)
    assert error.code == 1008 and error.reason == "peer stopped reading"


async def test_write_timeout_none_keeps_waiting() -> None:
    blocked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def flood(ws: ServerConnection) -> None:
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        chunk = random_bytes(2**16)
        try:
            for _ in range(10_000):
                await asyncio.wait_for(ws.send(chunk), 1.0)
        except asyncio.TimeoutError:
            blocked.set_result(None)  # still open, still waiting: nothing cut it off
            assert ws.close_code is None
            ws.transport.abort()

    async with (
        serve(flood, "127.0.0.1", 0, ping_interval=None, compression=None, write_timeout=None) as server,
        raw_client(port_of(server), rcvbuf=4096),
    ):
        await asyncio.wait_for(blocked, 60)


async def test_idle_connection_is_closed_with_1001() -> None:
    async def idle(ws: ServerConnection) -> None:
        await ws.wait_closed()

    server = await serve(idle, "127.0.0.1", 0, ping_interval=None, idle_timeout=0.2)
    async with server, raw_client(port_of(server)) as (reader, _):
        opcode, payload = (await asyncio.wait_for(read_frame(reader), 10))[:2]
    assert opcode == Opcode.CLOSE
    assert payload[:2] == (1001).to_bytes(2, "big") and payload[2:] == b"idle timeout"


async def test_messages_keep_a_connection_alive_but_pings_do_not() -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=5, idle_timeout=1.0) as server,
        connect(f"ws://127.0.0.1:{port_of(server)}", ping_interval=None) as ws,
    ):
        for _ in range(6):  # 6 x 0.25 s of traffic: longer than the idle timeout
            await ws.send("tick")
            assert await ws.recv() == "tick"
            await asyncio.sleep(0.25)
        # Now only the server's keepalive pings flow: the idle timeout strikes.
        with pytest.raises(ConnectionClosedOK) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.code == 1001 and info.value.reason == "idle timeout"
