"""The blocking client: wsskit.sync.connect against real wss:// servers on loopback.

The servers run on an event loop thread of their own (tests/sync/server_thread.py);
the client runs on wsskit's shared loop thread and is driven from the test's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.sync.server_thread import ServerThread
from wsskit.asyncio import ServerConnection
from wsskit.asyncio.client import connect as async_connect
from wsskit.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    InvalidStatus,
    InvalidURI,
)
from wsskit.protocol.connection import State
from wsskit.protocol.events import Accept, Reject, Request
from wsskit.sync import ClientConnection, connect
from wsskit.sync.loop import shared_loop

TIMEOUT = 10
QUIET: dict[str, Any] = {"ping_interval": None, "close_timeout": 2}


def test_echo_over_tls(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    with (
        ServerThread(ssl=server_ssl, subprotocols=["chat"]) as server,
        connect(server.url("/echo"), ssl=client_ssl, subprotocols=["chat"], **QUIET) as ws,
    ):
        assert isinstance(ws, ClientConnection)
        ws.send("Hello World!")
        assert ws.recv(timeout=TIMEOUT) == "Hello World!"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff" * 1000
        ws.send(bytearray(b"mutable"))
        assert ws.recv(timeout=TIMEOUT) == b"mutable"
        assert ws.subprotocol == "chat"
        assert isinstance(ws.response, Accept) and ws.response.subprotocol == "chat"
        assert isinstance(ws.request, Request) and ws.request.headers["Host"] == f"localhost:{server.port}"
        assert ws.remote_address[1] == server.port
        assert ws.state is State.OPEN
        assert ws.close_code is None and ws.close_reason is None
    assert ws.state is State.CLOSED
    assert ws.close_code == 1000 and ws.close_reason == ""


def test_recv_timeout_raises_and_loses_no_message(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def answer_late(ws: ServerConnection) -> None:
        assert await ws.recv() == "go"
        await ws.send("late")
        await ws.wait_closed()

    with (
        ServerThread(answer_late, ssl=server_ssl) as server,
        connect(server.url(), ssl=client_ssl, **QUIET) as ws,
    ):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        assert 0.05 <= time.monotonic() - started < TIMEOUT
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        # The receive that timed out took nothing with it.
        ws.send("go")
        assert ws.recv(timeout=TIMEOUT) == "late"
        with pytest.raises(ValueError, match="negative"):
            ws.recv(timeout=-1)


def test_threads_send_concurrently_without_interleaving(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    threads_count, per_thread = 8, 25

    def message(thread: int, seq: int) -> str:
        # Large enough to fill the write buffer (write_limit is 32 KiB), so
        # that senders wait on each other; each filled with its own letter.
        size = 1000 + (thread * 7919 + seq * 104729) % 60000
        return f"{thread}:{seq}:" + chr(ord("a") + thread) * size

    with ServerThread(ssl=server_ssl) as server, connect(server.url(), ssl=client_ssl, **QUIET) as ws:
        errors: list[BaseException] = []

        def sender(thread: int) -> None:
            try:
                for seq in range(per_thread):
                    text = message(thread, seq)
                    if seq % 5 == 4:
                        # A fragmented message: other threads' sends must wait for its end.
                        ws.send([text[:10], text[10:500], text[500:]])
                    else:
                        ws.send(text)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        senders = [threading.Thread(target=sender, args=(n,)) for n in range(threads_count)]
        for sending in senders:
            sending.start()
        received = [ws.recv(timeout=TIMEOUT) for _ in range(threads_count * per_thread)]
        for sending in senders:
            sending.join(TIMEOUT)
            assert not sending.is_alive()
        assert errors == []

    last_seq = dict.fromkeys(range(threads_count), -1)
    for text in received:
        assert isinstance(text, str)
        thread_text, seq_text, _ = text.split(":", 2)
        thread, seq = int(thread_text), int(seq_text)
        assert text == message(thread, seq)  # whole: no other message's bytes inside
        assert seq == last_seq[thread] + 1  # each thread's messages in its order
        last_seq[thread] = seq
    assert all(seq == per_thread - 1 for seq in last_seq.values())


def test_iteration_ends_on_a_normal_close(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def three_then_close(ws: ServerConnection) -> None:
        for text in ("one", "two", "three"):
            await ws.send(text)
        # returning closes with 1000

    with ServerThread(three_then_close, ssl=server_ssl) as server:
        ws = connect(server.url(), ssl=client_ssl, **QUIET)
        assert list(ws) == ["one", "two", "three"]
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            ws.recv()
        with pytest.raises(ConnectionClosedOK):
            ws.send("too late")


def test_iteration_raises_on_an_error_close(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def fail(ws: ServerConnection) -> None:
        await ws.send("before")
        await ws.close(1011, "oops")

    with ServerThread(fail, ssl=server_ssl) as server:
        ws = connect(server.url(), ssl=client_ssl, **QUIET)
        received = []
        with pytest.raises(ConnectionClosedError) as info:
            for message in ws:
                received.append(message)
        assert received == ["before"]
        assert (info.value.code, info.value.reason) == (1011, "oops")
        assert (ws.close_code, ws.close_reason) == (1011, "oops")


def test_close_code_and_reason_reach_the_server(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    seen: queue.Queue[tuple[int | None, str | None]] = queue.Queue()

    async def record(ws: ServerConnection) -> None:
        await ws.wait_closed()
        seen.put((ws.close_code, ws.close_reason))

    with ServerThread(record, ssl=server_ssl) as server:
        ws = connect(server.url(), ssl=client_ssl, **QUIET)
        ws.close(4001, "bye")
        assert seen.get(timeout=TIMEOUT) == (4001, "bye")
        assert ws.close_code == 4001  # the server's echo of it
        assert ws.wait_closed(timeout=TIMEOUT) is True
        ws.close()  # again: nothing more


def test_handshake_refused_raises_invalid_status(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Reject:
        return Reject(403, body=b"no")

    with ServerThread(ssl=server_ssl, process_request=refuse) as server:
        with pytest.raises(InvalidStatus) as info:
            connect(server.url(), ssl=client_ssl, **QUIET)
        assert info.value.response.status == 403


def test_network_and_tls_failures_raise_their_errors(server_ssl: ssl.SSLContext) -> None:
    # The system's CAs do not trust the test CA.
    with ServerThread(ssl=server_ssl) as server, pytest.raises(ssl.SSLCertVerificationError):
        connect(server.url(), **QUIET)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{port}/", **QUIET)
    with pytest.raises(InvalidURI):
        connect("http://example.com/")


def test_ping_returns_a_future_for_the_latency(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    with ServerThread(ssl=server_ssl) as server, connect(server.url(), ssl=client_ssl, **QUIET) as ws:
        waiter = ws.ping()
        assert isinstance(waiter, concurrent.futures.Future)
        latency = waiter.result(TIMEOUT)
        assert isinstance(latency, float) and 0 <= latency < TIMEOUT
        assert ws.latency == latency
        assert ws.ping(b"mine").result(TIMEOUT) >= 0
        ws.pong(b"unsolicited")
    with pytest.raises(ConnectionClosedOK):
        ws.ping()


def test_fragments_from_a_generator(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    closes: queue.Queue[int | None] = queue.Queue()

    async def echo_then_report(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.put(ws.close_code)

    def pieces() -> Iterator[bytes]:
        for n in range(5):
            yield bytes([n]) * 3

    def broken() -> Iterator[str]:
        yield "first part"
        raise RuntimeError("the source failed")

    with ServerThread(echo_then_report, ssl=server_ssl) as server:
        ws = connect(server.url(), ssl=client_ssl, **QUIET)
        ws.send(pieces())
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x00\x00\x01\x01\x01\x02\x02\x02\x03\x03\x03\x04\x04\x04"
        ws.send(iter([]))  # nothing to send: no message
        with pytest.raises(TypeError):
            ws.send(["text", b"bytes"])  # mixed fragments: the connection fails
        assert closes.get(timeout=TIMEOUT) == 1011

        ws = connect(server.url(), ssl=client_ssl, **QUIET)
        with pytest.raises(RuntimeError, match="the source failed"):
            ws.send(broken())
        # A message cut short cannot be taken back: the connection fails with 1011.
        assert closes.get(timeout=TIMEOUT) == 1011
        assert ws.wait_closed(TIMEOUT)
        assert ws.close_code == 1011


def test_blocking_calls_on_the_loop_thread_raise(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    with ServerThread(ssl=server_ssl) as server, connect(server.url(), ssl=client_ssl, **QUIET) as ws:
        outcome: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

        def on_loop() -> None:
            try:
                ws.recv()
            except BaseException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        shared_loop().call_soon(on_loop)
        assert isinstance(outcome.result(TIMEOUT), InvalidState)
        # The connection is unharmed.
        ws.send("still fine")
        assert ws.recv(timeout=TIMEOUT) == "still fine"


def test_connect_takes_the_options_of_the_asyncio_connect() -> None:
    sync_parameters = inspect.signature(connect).parameters
    async_parameters = dict(inspect.signature(async_connect).parameters)
    for name in ("reconnect", "on_reconnecting"):
        async_parameters.pop(name, None)
    assert list(sync_parameters) == list(async_parameters)
    for name, parameter in sync_parameters.items():
        assert parameter.kind == async_parameters[name].kind, name
        assert parameter.default == async_parameters[name].default, name


def test_open_timeout_bounds_the_handshake() -> None:
    # A TCP server that accepts and never answers the upgrade.
    writers: list[asyncio.StreamWriter] = []

    async def silent() -> asyncio.Server:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)

        return await asyncio.start_server(accept, "127.0.0.1", 0)

    async def close(server: asyncio.Server) -> None:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()

    runner = shared_loop()
    server = runner.run(silent())
    try:
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2, **QUIET)
        assert 0.2 <= time.monotonic() - started < TIMEOUT
    finally:
        runner.run(close(server))
