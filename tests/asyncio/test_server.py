"""The asyncio server: handlers, closing, process_request, subprotocols, timeouts, containment."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from tests.asyncio.raw import echo, port_of, raw_client, read_frame, read_head, running, write_frame
from wsskit.asyncio import Server, ServerConnection, connect, serve
from wsskit.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
    NegotiationError,
)
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.headers import Headers

TIMEOUT = 10


async def _http(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes, read until the server closes; return the response head and body."""
    async with raw_client(port, upgrade=False) as (reader, writer):
        writer.write(request)
        response = await asyncio.wait_for(reader.read(), TIMEOUT)
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


def _get(path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()


# -- handlers -----------------------------------------------------------------------------------


async def test_handler_return_closes_with_1000() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("hi")

    async with running(handler) as (_, ws):
        assert await ws.recv() == "hi"
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000


async def test_handler_exception_closes_with_1011_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: ServerConnection) -> None:
        raise ValueError("handler bug")

    caplog.set_level(logging.ERROR, "wsskit.server")
    async with running(handler) as (_, ws):
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    [record] = [r for r in caplog.records if r.name == "wsskit.server"]
    assert record.exc_info is not None and "handler bug" in str(record.exc_info[1])


async def test_a_peer_that_leaves_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    ended = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        finally:
            ended.set_result(None)

    caplog.set_level(logging.DEBUG, "wsskit")
    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None) as server,
        raw_client(port_of(server)) as (_, writer),
    ):
        writer.transport.abort()
        await asyncio.wait_for(ended, TIMEOUT)
    _no_tracebacks(caplog)


async def test_request_and_connections_in_the_handler() -> None:
    seen: dict[str, object] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["path"] = ws.request.path
        seen["listed"] = ws in server.connections
        seen["response"] = ws.response
        await ws.send("ok")

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{port_of(server)}/some/path?q=1", ping_interval=None) as ws,
    ):
        assert await ws.recv() == "ok"
        assert ws.response is not None
        assert ws.response.headers["Server"].startswith("wsskit/")
    assert seen["path"] == "/some/path"
    assert seen["listed"] is True
    assert seen["response"] is not None
    assert not server.connections


async def test_server_header_can_be_changed_or_dropped() -> None:
    async with running(server={"server_header": "custom/1"}) as (_, ws):
        assert ws.response is not None and ws.response.headers["Server"] == "custom/1"
    async with running(server={"server_header": None}) as (_, ws):
        assert ws.response is not None and "Server" not in ws.response.headers


# -- closing the server ---------------------------------------------------------------------------


async def test_close_sends_1001_to_every_client() -> None:
    running_handlers: list[ServerConnection] = []
    all_running = asyncio.get_running_loop().create_future()
    handlers_done: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        running_handlers.append(ws)
        if len(running_handlers) == 3:
            all_running.set_result(None)
        try:
            await ws.recv()
        except ConnectionClosedOK as exc:
            handlers_done.append(exc.code)

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
    uri = f"ws://127.0.0.1:{port_of(server)}/"
    clients = [await connect(uri, ping_interval=None) for _ in range(3)]
    await asyncio.wait_for(all_running, TIMEOUT)
    assert len(server.connections) == 3
    await asyncio.wait_for(server.close(), TIMEOUT)
    await server.wait_closed()
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (1001, "going away")
    assert handlers_done == [1001, 1001, 1001]  # their recv() saw our own close code
    assert not server.connections and not server.sockets
    assert server.close() is server.close()  # the same task


async def test_close_without_closing_connections_waits_for_handlers() -> None:
    release = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await release
        await ws.send("released")

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
    ws = await connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None)
    closing = server.close(close_connections=False)
    await asyncio.sleep(0)
    assert not closing.done()
    release.set_result(None)
    assert await ws.recv() == "released"
    await asyncio.wait_for(closing, TIMEOUT)
    with pytest.raises(ConnectionClosedOK) as info:
        await ws.recv()
    assert info.value.code == 1000


async def test_close_drops_connections_still_in_their_handshake() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=None) as server,
        raw_client(port_of(server), upgrade=False) as (reader, _),
    ):
        await asyncio.sleep(0)  # let the server accept
        await asyncio.wait_for(server.close(), TIMEOUT)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_serve_forever_returns_once_closed() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    forever = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0)
    assert not forever.done()
    await server.close()
    await asyncio.wait_for(forever, TIMEOUT)


async def test_cancelling_serve_forever_closes_the_server() -> None:
    server = await serve(echo, "127.0.0.1", 0, ping_interval=None)
    ws = await connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None)
    forever = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0)
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    assert not server.sockets
    with pytest.raises(ConnectionClosedOK):
        await ws.recv()


async def test_serve_accepts_create_server_arguments() -> None:
    server = await serve(echo, "127.0.0.1", 0, backlog=5, reuse_port=True)
    assert isinstance(server, Server) and len(server.sockets) == 1
    await server.close()


# -- HTTP and process_request -----------------------------------------------------------------------


async def test_a_plain_get_gets_426(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsskit.server")
    async with serve(echo, "127.0.0.1", 0) as server:
        head, body = await _http(port_of(server), _get())
    assert head.startswith(b"HTTP/1.1 426 ")
    assert b"\r\nsec-websocket-version: 13" in head.lower()
    assert body
    _no_tracebacks(caplog)
    assert len([r for r in caplog.records if r.name == "wsskit.server"]) == 1


async def test_malformed_http_is_answered_by_the_core(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsskit.server")
    async with serve(echo, "127.0.0.1", 0) as server:
        head, _ = await _http(port_of(server), b"NOT HTTP AT ALL\r\n\r\n")
    assert head.split()[1] == b"400"
    _no_tracebacks(caplog)
    assert len([r for r in caplog.records if r.name == "wsskit.server"]) == 1


async def test_process_request_can_answer_plain_http() -> None:
    def process_request(ws: ServerConnection, request: Request) -> Reject | None:
        if request.path == "/health":
            return Reject(200, Headers([("Content-Type", "text/plain")]), b"OK\n")
        if request.path != "/ws":
            return Reject(404, body=b"not found\n")
        return None

    async with serve(echo, "127.0.0.1", 0, process_request=process_request, ping_interval=None) as server:
        port = port_of(server)
        head, body = await _http(port, _get("/health"))
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"OK\n"
        assert b"server: wsskit/" in head.lower()
        head, body = await _http(port, _get("/elsewhere"))
        assert head.startswith(b"HTTP/1.1 404 ") and body == b"not found\n"
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port}/elsewhere")
        assert info.value.response.status == 404
        async with connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None) as ws:
            await ws.send("through")
            assert await ws.recv() == "through"


async def test_async_process_request() -> None:
    async def process_request(ws: ServerConnection, request: Request) -> Reject | None:
        await asyncio.sleep(0)
        return Reject(403, body=b"go away\n") if "X-Token" not in request.headers else None

    async with serve(echo, "127.0.0.1", 0, process_request=process_request, ping_interval=None) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        with pytest.raises(InvalidStatus) as info:
            await connect(uri)
        assert info.value.response.status == 403
        async with connect(uri, additional_headers={"X-Token": "t"}, ping_interval=None) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_process_request_errors_give_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ws: ServerConnection, request: Request) -> Reject | None:
        raise RuntimeError("process_request bug")

    def wrong_type(ws: ServerConnection, request: Request) -> Reject | None:
        return "nope"  # type: ignore[return-value]

    caplog.set_level(logging.ERROR, "wsskit.server")
    for process_request in (broken, wrong_type):
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{port_of(server)}/")
            assert info.value.response.status == 500
    assert len([r for r in caplog.records if r.exc_info]) == 2


# -- subprotocols ---------------------------------------------------------------------------------


async def test_select_subprotocol() -> None:
    def select(ws: ServerConnection, offered: object) -> str | None:
        return "b" if "b" in offered else None  # type: ignore[operator]

    async with running(server={"select_subprotocol": select}, client={"subprotocols": ["a", "b"]}) as (_, ws):
        assert ws.subprotocol == "b"


async def test_select_subprotocol_may_refuse_with_400() -> None:
    def select(ws: ServerConnection, offered: object) -> str | None:
        raise NegotiationError("a subprotocol is required")

    async with serve(echo, "127.0.0.1", 0, select_subprotocol=select) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port_of(server)}/")
    assert info.value.response.status == 400
    assert b"a subprotocol is required" in info.value.response.body


# -- timeouts and containment -------------------------------------------------------------------------


async def test_open_timeout_drops_a_silent_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "wsskit.server")
    async with (
        serve(echo, "127.0.0.1", 0, open_timeout=0.05) as server,
        raw_client(port_of(server), upgrade=False) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\n")  # and never the rest
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    messages = [r.getMessage() for r in caplog.records if r.name == "wsskit.server"]
    assert len(messages) == 1 and "timed out" in messages[0]


async def test_open_timeout_covers_the_tls_handshake(server_ssl: ssl.SSLContext) -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ssl=server_ssl, open_timeout=0.05) as server,
        raw_client(port_of(server), upgrade=False) as (reader, _),
    ):
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_a_misbehaving_peer_does_not_affect_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "wsskit")
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, open_timeout=1) as server:
        port = port_of(server)
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as good:
            # An unmasked frame from a client: protocol error, close 1002.
            async with raw_client(port) as (reader, writer):
                write_frame(writer, 0x1, b"unmasked", mask=False)
                opcode, payload, _ = await asyncio.wait_for(read_frame(reader), TIMEOUT)
                assert (opcode, payload[:2]) == (0x8, (1002).to_bytes(2, "big"))
            # Garbage instead of HTTP.
            head, _ = await _http(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 4")
            # A client that drops in the middle of a frame.
            async with raw_client(port) as (_, writer):
                writer.write(b"\x81\xfe\x10\x00abcd")
                writer.transport.abort()
            # A client that drops in the middle of its request.
            async with raw_client(port, upgrade=False) as (_, writer):
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
                writer.transport.abort()
            for i in range(20):
                await good.send(f"still here {i}")
                assert await good.recv() == f"still here {i}"
    _no_tracebacks(caplog)


async def test_pipelined_frames_after_the_request_are_handled() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=None) as server,
        raw_client(port_of(server), upgrade=False) as (reader, writer),
    ):
        from wsskit.protocol.handshake import make_key

        writer.write(
            f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {make_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        write_frame(writer, 0x1, b"early", mask=True)
        assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
        assert (await asyncio.wait_for(read_frame(reader), TIMEOUT))[:2] == (0x1, b"early")


async def test_an_awaited_server_works_as_a_context_manager() -> None:
    server = await serve(echo, "127.0.0.1", 0, ping_interval=None, open_timeout=None)
    async with server, connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
    assert not server.sockets


async def test_a_selector_choosing_what_was_not_offered_is_a_server_error() -> None:
    def rogue(connection: ServerConnection, offered: object) -> str:
        return "never.offered"

    async with serve(echo, "127.0.0.1", 0, ping_interval=None, select_subprotocol=rogue) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port_of(server)}/", subprotocols=["chat"], ping_interval=None)
    assert info.value.response.status == 500
