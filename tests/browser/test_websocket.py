"""wsskit.browser.WebSocket inside an asyncio program, against real wss:// servers on loopback.

Everything runs on the test's event loop: the server, the socket, its
listeners. Waiting is on the socket's events (``await ws.closed()``, a
queue fed by a listener), bounded by TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.asyncio.raw import accept_upgrade, echo, port_of, read_frame, write_frame
from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.browser import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    CloseEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    WebSocket,
)
from wsskit.exceptions import (
    ConnectionClosedError,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    RemoteProtocolError,
)
from wsskit.protocol.events import Reject, Request

TIMEOUT = 10
QUIET: dict[str, Any] = {"ping_interval": None, "close_timeout": 2}


@asynccontextmanager
async def running(
    server_ssl: ssl.SSLContext,
    handler: Callable[[ServerConnection], Awaitable[None]] = echo,
    **options: Any,
) -> AsyncIterator[Server]:
    async with serve(handler, "127.0.0.1", 0, ssl=server_ssl, **{**QUIET, **options}) as server:
        yield server


def url(server: Server, path: str = "/echo") -> str:
    return f"wss://localhost:{port_of(server)}{path}"


class Recorder:
    """Listeners for every event type that note (type, ready_state, details) in order."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.seen: list[tuple[str, int, Any]] = []
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        for type in ("open", "message", "error", "close", "reconnecting"):
            ws.add_event_listener(type, self.record)

    def record(self, event: Event) -> None:
        assert event.target is self.ws
        detail: Any = None
        if isinstance(event, MessageEvent):
            detail = event.data
            self.messages.put_nowait(event.data)
        elif isinstance(event, CloseEvent):
            detail = (event.code, event.reason, event.was_clean)
        elif isinstance(event, ErrorEvent):
            detail = event.exception
        self.seen.append((event.type, self.ws.ready_state, detail))

    @property
    def types(self) -> list[str]:
        return [type for type, _, _ in self.seen]

    async def next_message(self) -> Any:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)


async def closed(ws: WebSocket) -> CloseEvent:
    return await asyncio.wait_for(ws.closed(), TIMEOUT)


async def test_the_browser_snippet_line_for_line(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(server_ssl) as server:
        # const socket = new WebSocket("wss://localhost:8443/echo");
        socket = WebSocket(url(server), ssl=client_ssl, **QUIET)
        # socket.addEventListener("open", (event) => { console.log("open"); socket.send("Hello Server!"); });
        socket.addEventListener("open", lambda event: (print("open"), socket.send("Hello Server!")))
        # socket.addEventListener("message", (event) => { console.log(event.data); socket.close(); });
        socket.addEventListener("message", lambda event: (print(event.data), socket.close()))
        # socket.addEventListener("close", (event) => console.log("closed"));
        socket.addEventListener("close", lambda event: print("closed"))
        await closed(socket)
    assert capsys.readouterr().out.splitlines() == ["open", "Hello Server!", "closed"]


async def test_events_come_in_order_with_the_state_they_describe(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen_by_server: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await echo(ws)
        finally:
            seen_by_server.set_result((ws.close_code, ws.close_reason))

    async with running(server_ssl, handler, subprotocols=["chat", "superchat"]) as server:
        ws = WebSocket(url(server), ["superchat", "other"], ssl=client_ssl, **QUIET)
        assert ws.ready_state == CONNECTING == WebSocket.CONNECTING == ws.readyState
        assert ws.url == url(server)
        assert ws.protocol == "" and ws.extensions == ""
        recorder = Recorder(ws)
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        assert ws.ready_state == OPEN
        assert ws.protocol == "superchat"
        assert ws.extensions.startswith("permessage-deflate")
        ws.send("one")
        ws.send(b"two")
        assert await recorder.next_message() == "one"
        assert await recorder.next_message() == b"two"
        ws.close(4001, "done here")
        assert ws.ready_state == CLOSING
        event = await closed(ws)
        assert await asyncio.wait_for(seen_by_server, TIMEOUT) == (4001, "done here")
    # The server echoes the code (RFC 6455 §5.5.1); its Close has no reason.
    assert (event.code, event.reason, event.was_clean, event.wasClean) == (4001, "", True, True)
    assert recorder.seen == [
        ("open", OPEN, None),
        ("message", OPEN, "one"),
        ("message", OPEN, b"two"),
        ("close", CLOSED, (4001, "", True)),
    ]
    assert ws.ready_state == CLOSED
    await asyncio.wait_for(ws.closed(), TIMEOUT)  # again: at once


async def test_a_close_from_the_server_is_clean(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("last words")
        await ws.close(4002, "server says bye")

    async with running(server_ssl, handler) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        await closed(ws)
    assert recorder.seen == [
        ("open", OPEN, None),
        ("message", OPEN, "last words"),
        ("close", CLOSED, (4002, "server says bye", True)),
    ]


async def test_close_without_a_code_sends_none(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    codes: asyncio.Queue[int | None] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        codes.put_nowait(ws.close_code)

    async with running(server_ssl, handler) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        ws.onopen = lambda event: ws.close()
        event = await closed(ws)
        assert await asyncio.wait_for(codes.get(), TIMEOUT) == 1005
        assert (event.code, event.was_clean) == (1005, True)

        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        ws.onopen = lambda event: ws.close(reason="a reason needs a code")
        event = await closed(ws)
        assert await asyncio.wait_for(codes.get(), TIMEOUT) == 1000
        assert (event.code, event.was_clean) == (1000, True)


async def test_binary_type_chooses_the_type_of_binary_data(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        assert ws.binary_type == "bytes"
        for binary_type, expected in [
            ("bytes", bytes),
            ("bytearray", bytearray),
            ("memoryview", memoryview),
            ("arraybuffer", bytearray),
            ("blob", bytes),
        ]:
            ws.binary_type = binary_type  # type: ignore[assignment]
            ws.send(b"\x01\x02")
            data = await recorder.next_message()
            assert type(data) is expected and bytes(data) == b"\x01\x02", binary_type
        ws.binaryType = "memoryview"
        assert ws.binaryType == ws.binary_type == "memoryview"
        ws.send("text stays str")
        assert await recorder.next_message() == "text stays str"
        with pytest.raises(ValueError):
            ws.binary_type = "json"  # type: ignore[assignment]
        assert ws.binary_type == "memoryview"
        ws.close()
        await closed(ws)

        ws = WebSocket(url(server), ssl=client_ssl, binary_type="bytearray", **QUIET)
        recorder = Recorder(ws)
        ws.onopen = lambda event: ws.send(b"abc")
        assert await recorder.next_message() == bytearray(b"abc")
        assert type(recorder.seen[-1][2]) is bytearray
        ws.close()
        await closed(ws)


async def test_buffered_amount_goes_up_then_back_to_zero(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    received: list[int] = []

    async def count(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(len(message))
            await ws.send(str(len(message)))

    async with running(server_ssl, count) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        assert ws.buffered_amount == 0
        chunk = bytes(300_000)
        ws.send(chunk)
        ws.send(bytearray(chunk))
        ws.send("é" * 10)  # 20 bytes in UTF-8
        # Nothing was written yet: send() only queues (the loop has not run).
        assert ws.buffered_amount == ws.bufferedAmount == 600_020
        for expected in ("300000", "300000", "10"):
            assert await recorder.next_message() == expected
        # The server read every message, so each was written: nothing is queued.
        assert ws.buffered_amount == 0
        ws.close()
        assert ws.ready_state == CLOSING
        # While CLOSING or CLOSED: discarded, yet counted, as the standard says.
        ws.send("after close")
        assert ws.buffered_amount == 11
        await closed(ws)
        ws.send(b"1234")
        assert ws.buffered_amount == 15
    assert received == [300_000, 300_000, 10]


async def test_send_while_connecting_raises_invalid_state(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        with pytest.raises(InvalidState):
            ws.send("too early")
        assert ws.buffered_amount == 0
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        ws.close()
        await closed(ws)


async def test_close_checks_its_arguments_as_browsers_do(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        seen.set_result((ws.close_code, ws.close_reason))

    async with running(server_ssl, handler) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        for code in (999, 1001, 1005, 1006, 1011, 2999, 5000, True):
            with pytest.raises(ValueError, match="close code"):
                ws.close(code)
        with pytest.raises(ValueError, match="123 bytes"):
            ws.close(1000, "é" * 62)  # 124 bytes
        with pytest.raises(TypeError):
            ws.close(1000, b"bytes")  # type: ignore[arg-type]
        assert ws.ready_state == OPEN  # none of these did anything
        longest = "é" * 61 + "x"  # 123 bytes
        ws.close(4999, longest)
        await closed(ws)
        assert await asyncio.wait_for(seen, TIMEOUT) == (4999, longest)


async def test_listeners_once_duplicates_and_removal(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        calls: list[str] = []

        def twice_added(event: MessageEvent) -> None:
            calls.append(f"dup:{event.data}")

        def once(event: MessageEvent) -> None:
            calls.append(f"once:{event.data}")

        def removed(event: MessageEvent) -> None:
            calls.append(f"removed:{event.data}")

        def remover(event: MessageEvent) -> None:
            calls.append(f"remover:{event.data}")
            ws.remove_event_listener("message", victim)

        def victim(event: MessageEvent) -> None:
            calls.append(f"victim:{event.data}")

        ws.add_event_listener("message", twice_added)
        ws.addEventListener("message", twice_added)  # the same listener: ignored
        ws.add_event_listener("message", once, once=True)
        ws.add_event_listener("message", removed)
        ws.onmessage = lambda event: calls.append(f"first handler:{event.data}")
        ws.add_event_listener("message", remover)
        ws.add_event_listener("message", victim)  # removed by remover before its turn
        ws.removeEventListener("message", removed)
        ws.remove_event_listener("message", print)  # never added: nothing happens
        ws.add_event_listener("message", None)  # ignored, as in browsers
        # Replacing the handler keeps its place among the listeners.
        ws.onmessage = lambda event: calls.append(f"handler:{event.data}")
        with pytest.raises(TypeError):
            ws.add_event_listener("message", "not callable")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.onmessage = "not callable"  # type: ignore[assignment]
        recorder = Recorder(ws)
        ws.onopen = lambda event: ws.send("a")
        assert await recorder.next_message() == "a"
        assert ws.onmessage is not None
        ws.onmessage = None
        assert ws.onmessage is None
        ws.send("b")
        assert await recorder.next_message() == "b"
        ws.close()
        await closed(ws)
    assert calls == [
        "dup:a",
        "once:a",
        "handler:a",
        "remover:a",
        "dup:b",
        "remover:b",
    ]
    assert WebSocket.onmessage is not None  # the descriptor itself, on the class


async def test_coroutine_listeners_and_failing_listeners(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        done: list[str] = []

        async def later(event: MessageEvent) -> None:
            await asyncio.sleep(0)
            done.append(f"coroutine:{event.data}")
            if event.data == "2":
                ws.close()

        def broken(event: Event) -> None:
            raise RuntimeError("listener bug")

        async def broken_later(event: Event) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("coroutine listener bug")

        ws.add_event_listener("message", broken)
        ws.add_event_listener("message", broken_later)
        ws.add_event_listener("message", later)
        ws.add_event_listener("message", lambda event: done.append(f"plain:{event.data}"))

        async def on_close(event: CloseEvent) -> None:
            await asyncio.sleep(0)
            done.append("close")

        ws.onclose = on_close
        ws.onopen = lambda event: (ws.send("1"), ws.send("2"))
        with caplog.at_level(logging.ERROR, logger="wsskit.browser"):
            await closed(ws)
    # Each listener saw the messages in order; closed() waited for the
    # coroutine listeners, onclose's included.
    assert [entry for entry in done if entry.startswith("plain")] == ["plain:1", "plain:2"]
    assert [entry for entry in done if entry.startswith("coroutine")] == ["coroutine:1", "coroutine:2"]
    assert done[-1] == "close" and len(done) == 5
    messages = [record.getMessage() for record in caplog.records]
    assert sum("listener" in message and "raised" in message for message in messages) == 4


async def test_a_refused_handshake_gives_error_then_close_1006(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Reject:
        return Reject(403, body=b"not you")

    async with running(server_ssl, process_request=refuse) as server:
        for reconnect in (False, True):  # a 403 is never retried
            ws = WebSocket(url(server), ssl=client_ssl, reconnect=reconnect, **QUIET)
            recorder = Recorder(ws)
            with pytest.raises(InvalidStatus) as info:
                await asyncio.wait_for(ws.opened(), TIMEOUT)
            assert info.value.response.status == 403
            event = await closed(ws)
            assert (event.code, event.reason, event.was_clean) == (1006, "", False)
            assert recorder.types == ["error", "close"]
            error = recorder.seen[0][2]
            assert isinstance(error, InvalidStatus) and error.response.status == 403
            assert recorder.seen[0][1] == CLOSED  # ready_state is CLOSED when error fires
            with pytest.raises(InvalidStatus):
                await ws.opened()  # once closed: at once


async def test_a_certificate_that_does_not_verify_gives_error_then_close(server_ssl: ssl.SSLContext) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), **QUIET)  # the system's CAs do not trust the test CA
        recorder = Recorder(ws)
        event = await closed(ws)
    assert recorder.types == ["error", "close"]
    assert isinstance(recorder.seen[0][2], ssl.SSLCertVerificationError)
    assert (event.code, event.was_clean) == (1006, False)


async def test_a_dropped_connection_gives_error_then_close(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def drop(ws: ServerConnection) -> None:
        await ws.send("bye")
        await ws.recv()
        ws.transport.abort()

    async with running(server_ssl, drop) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        assert await recorder.next_message() == "bye"
        ws.send("drop me")
        event = await closed(ws)
    assert recorder.types == ["open", "message", "error", "close"]
    error = recorder.seen[2][2]
    assert isinstance(error, ConnectionClosedError) and error.code == 1006
    assert (event.code, event.reason, event.was_clean) == (1006, "", False)


async def test_close_while_connecting_fails_the_connection(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        ws.close(1000)
        assert ws.ready_state == CLOSING
        ws.close(1000)  # again: nothing
        event = await closed(ws)
        assert recorder.seen == [("error", CLOSED, None), ("close", CLOSED, (1006, "", False))]
        assert event.was_clean is False
        with pytest.raises(ConnectionClosedError):
            await ws.opened()


async def test_blocking_helpers_refuse_to_block_the_loop(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, **QUIET)
        with pytest.raises(InvalidState):
            ws.run_forever()
        with pytest.raises(InvalidState):
            ws.wait_closed(1)
        with pytest.raises(InvalidState):
            ws.wait_open(1)
        # From another thread they block as they should.
        assert await asyncio.to_thread(ws.wait_open, TIMEOUT) is True
        ws.close()
        event = await asyncio.to_thread(ws.wait_closed, TIMEOUT)
        assert isinstance(event, CloseEvent) and event.code == 1005


def test_the_constructor_checks_its_arguments() -> None:
    # Raised before anything starts: no loop is needed for these.
    with pytest.raises(InvalidURI):
        WebSocket("ftp://example.com/")
    with pytest.raises(InvalidURI):
        WebSocket("wss://example.com/#fragment")
    with pytest.raises(ValueError, match="twice"):
        WebSocket("wss://example.com/", ["chat", "Chat"])
    with pytest.raises(ValueError, match="invalid subprotocol"):
        WebSocket("wss://example.com/", "two words")
    with pytest.raises(TypeError):
        WebSocket("wss://example.com/", no_such_option=1)
    with pytest.raises(TypeError, match="subprotocols"):
        WebSocket("wss://example.com/", subprotocols=["chat"])
    with pytest.raises(TypeError, match="reconnect"):
        WebSocket("wss://example.com/", reconnect="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ssl="):
        WebSocket("ws://example.com/", ssl=ssl.create_default_context())
    with pytest.raises(ValueError, match="binary_type"):
        WebSocket("wss://example.com/", binary_type="blobby")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression"):
        WebSocket("wss://example.com/", compression="zstd")


async def test_http_urls_map_to_websocket_urls(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(f"https://localhost:{port_of(server)}/echo", ssl=client_ssl, **QUIET)
        assert ws.url == url(server)
        assert repr(ws) == f"<WebSocket {url(server)} CONNECTING>"
        recorder = Recorder(ws)
        ws.onopen = lambda event: ws.send("via https:")
        assert await recorder.next_message() == "via https:"
        ws.close()
        await closed(ws)
        assert repr(ws) == f"<WebSocket {url(server)} CLOSED>"


async def test_a_full_buffer_fails_the_socket(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async with running(server_ssl) as server:
        ws = WebSocket(url(server), ssl=client_ssl, max_buffered_amount=1000, **QUIET)
        recorder = Recorder(ws)
        await asyncio.wait_for(ws.opened(), TIMEOUT)
        ws.send(bytes(600))
        ws.send(bytes(600))  # 1200 > 1000: full
        ws.send(b"counted, not sent")
        assert ws.buffered_amount == 1217
        event = await closed(ws)
    assert recorder.types == ["open", "error", "close"]
    assert isinstance(recorder.seen[1][2], BufferError)
    assert (event.code, event.was_clean) == (1006, False)


async def test_a_protocol_violation_gives_error_then_close(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    # A hand-written server peer over TLS: it accepts, then sends a frame
    # with a reserved opcode, and reads the Close that answers it.
    # RFC 6455 §7.1.7: the client fails the connection at once, without
    # waiting for a Close from the server, so its close event says 1006.
    closes: asyncio.Queue[bytes] = asyncio.Queue()

    async def violate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await accept_upgrade(reader, writer)
            write_frame(writer, 0x3, b"", mask=False)
            opcode, payload, _ = await read_frame(reader)
            assert opcode == 0x8
            closes.put_nowait(payload)
            await reader.read()  # until the client closes TCP
        finally:
            writer.close()

    server = await asyncio.start_server(violate, "127.0.0.1", 0, ssl=server_ssl)
    try:
        ws = WebSocket(f"wss://localhost:{port_of(server)}/", ssl=client_ssl, **QUIET)
        recorder = Recorder(ws)
        event = await closed(ws)
        payload = await asyncio.wait_for(closes.get(), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    assert int.from_bytes(payload[:2], "big") == 1002
    assert recorder.types == ["open", "error", "close"]
    error = recorder.seen[1][2]
    assert isinstance(error, RemoteProtocolError) and error.close_code == 1002
    assert (event.code, event.reason, event.was_clean) == (1006, "", False)
