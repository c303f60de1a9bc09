"""The asyncio client: connect(), its options, TLS, timeouts and handshake failures."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import sys

import pytest

from tests.asyncio.raw import accept_upgrade, echo, port_of, raw_server, read_head, running
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.limits import Limits

TIMEOUT = 10


async def test_connect_can_be_awaited() -> None:
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        ws = await connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None)
        await ws.send("awaited")
        assert await ws.recv() == "awaited"
        await ws.close()
        assert ws.close_code == 1000


async def test_the_request_carries_the_options() -> None:
    seen: asyncio.Future[Request] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.set_result(ws.request)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = port_of(server)
        uri = f"ws://alice:s3cret@127.0.0.1:{port}/chat/room?x=1"
        async with connect(
            uri,
            additional_headers={"X-Test": "yes"},
            origin="https://example.com",
            user_agent_header="tester/1.0",
            ping_interval=None,
            subprotocols=["chat"],
        ) as ws:
            request = await asyncio.wait_for(seen, TIMEOUT)
            # The client keeps the request it sent, the same one the server saw.
            assert ws.request is not None
            assert ws.request.target == "/chat/room?x=1"
            assert ws.request.headers == request.headers
            assert ws.request.subprotocols == ("chat",)
    assert request.path == "/chat/room" and request.query == {"x": "1"}
    assert request.headers["X-Test"] == "yes"
    assert request.headers["Origin"] == "https://example.com"
    assert request.headers["User-Agent"] == "tester/1.0"
    assert request.headers["Host"] == f"127.0.0.1:{port}"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()


async def test_default_user_agent_names_wsskit() -> None:
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.set_result(ws.request.headers["User-Agent"])

    async with running(handler):
        assert "wsskit/" in await asyncio.wait_for(seen, TIMEOUT)


@pytest.mark.parametrize(("compression", "negotiated"), [("deflate", True), (None, False)])
async def test_compression_option(compression: str | None, negotiated: bool) -> None:
    async with running(client={"compression": compression}) as (_, ws):
        assert bool(ws.extensions) is negotiated
        await ws.send("compressible " * 100)
        assert await ws.recv() == "compressible " * 100


async def test_argument_errors() -> None:
    with pytest.raises(InvalidURI):
        await connect("http://127.0.0.1/")
    with pytest.raises(ValueError, match="wss"):
        await connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())
    with pytest.raises(ValueError, match="compression"):
        connect("ws://127.0.0.1:1/", compression="brotli")


async def test_connection_refused_raises_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)


async def test_open_timeout_against_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as port:
        with pytest.raises(TimeoutError):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.1)
        with pytest.raises(TimeoutError):  # stuck in the TLS handshake
            await connect(f"wss://127.0.0.1:{port}/", open_timeout=0.1)


async def test_a_rejection_raises_invalid_status() -> None:
    def not_found(ws: ServerConnection, request: Request) -> Reject:
        return Reject(404, body=b"nothing at " + request.path.encode())

    async with serve(echo, "127.0.0.1", 0, process_request=not_found) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port_of(server)}/missing")
    assert info.value.response.status == 404
    assert info.value.response.body == b"nothing at /missing"


async def test_a_garbled_response_raises_invalid_handshake() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await reader.read()

    async with raw_server(garbage) as port:
        with pytest.raises(InvalidHandshake):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)


async def test_a_wrong_accept_key_raises_invalid_handshake() -> None:
    async def wrong_key(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )
        await reader.read()

    async with raw_server(wrong_key) as port:
        with pytest.raises(InvalidHandshake):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)


async def test_a_server_closing_during_the_handshake_raises_invalid_handshake() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.close()

    async with raw_server(hang_up) as port:
        with pytest.raises(InvalidHandshake):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)


async def test_frames_right_after_the_101_are_received() -> None:
    async def eager(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The 101 and a first message in one write.
        head = await read_head(reader)
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.decode().split("\r\n")
            if line.lower().startswith("sec-websocket-key")
        )
        from wsskit.protocol.handshake import accept_key

        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            + b"\x81\x05hello"
        )
        await reader.read()

    async with raw_server(eager) as port:
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.1)
        assert await ws.recv() == "hello"
        ws.transport.abort()


async def test_raw_upgrade_helper_works_with_our_client() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await reader.read()

    async with raw_server(peer) as port:
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.1)
        assert ws.subprotocol is None and ws.extensions == ()
        ws.transport.abort()


async def test_subprotocol_negotiation() -> None:
    options = {"subprotocols": ["chat", "superchat"]}
    async with running(server=options, client={"subprotocols": ["superchat", "chat"]}) as (_, ws):
        assert ws.subprotocol == "superchat"  # the client's preference
    async with running(server=options, client={"subprotocols": ["other"]}) as (_, ws):
        assert ws.subprotocol is None


async def test_max_size_overrides_limits() -> None:
    limits = Limits(max_message_size=10, max_fragments=8)
    async with running(client={"limits": limits, "max_size": 100}) as (_, ws):
        await ws.send("x" * 100)
        assert await ws.recv() == "x" * 100
    async with running(client={"limits": limits}) as (_, ws):
        await ws.send("x" * 11)
        with pytest.raises(Exception) as info:
            await ws.recv()
        assert getattr(info.value, "code", None) == 1009


# -- TLS --------------------------------------------------------------------------------------


async def test_wss_echo(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async with running(server={"ssl": server_ssl}, client={"ssl": client_ssl}) as (_, ws):
        assert ws.ssl_object is not None
        assert ws.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"
        data = bytes(range(256)) * 1024
        await ws.send(data)
        assert await ws.recv() == data
    assert ws.close_code == 1000


async def test_wss_verifies_by_default(server_ssl: ssl.SSLContext) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(f"wss://127.0.0.1:{port_of(server)}/", open_timeout=TIMEOUT)


async def test_wss_server_closing_reaches_the_client(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("bye")

    async with running(handler, server={"ssl": server_ssl}, client={"ssl": client_ssl}) as (_, ws):
        assert [message async for message in ws] == ["bye"]
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1000


async def test_options_without_timeouts_and_with_deflate_options() -> None:
    from wsskit.protocol.deflate import DeflateOptions

    options = {
        "open_timeout": None,
        "close_timeout": None,
        "compression": DeflateOptions(client_no_context_takeover=True),
        "max_queue": None,
    }
    async with running(client=options) as (_, ws):
        assert "client_no_context_takeover" in ws.extensions[0]
        for i in range(50):
            await ws.send(f"message {i}")
        assert [await ws.recv() for _ in range(50)] == [f"message {i}" for i in range(50)]


# -- advice on a wrong scheme or an untrusted CA ------------------------------------------


def _advice(exc: BaseException) -> str:
    # The message and the notes (3.11+): where connect() puts its advice.
    return " | ".join([str(exc), *getattr(exc, "__notes__", ())])


async def test_ws_to_a_tls_port_suggests_wss(server_ssl: ssl.SSLContext) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
        with pytest.raises(InvalidHandshake) as info:
            await connect(f"ws://127.0.0.1:{port_of(server)}/", open_timeout=TIMEOUT)
    assert type(info.value) is InvalidHandshake
    assert "does the server speak TLS? try wss://" in str(info.value)


async def test_a_tls_alert_in_answer_to_ws_suggests_wss() -> None:
    async def alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        # What some TLS servers send to a plain GET: a fatal alert record (TLS 1.2).
        writer.write(b"\x15\x03\x03\x00\x02\x02\x46")
        writer.close()

    async with raw_server(alert) as port:
        with pytest.raises(InvalidHandshake) as info:
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
    # No status line, so the core reports a connection closed; the bytes were a TLS record.
    assert type(info.value) is InvalidHandshake
    assert "does the server speak TLS? try wss://" in str(info.value)


async def test_a_garbled_answer_gets_no_tls_advice() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        writer.close()

    async with raw_server(garbage) as port:
        with pytest.raises(InvalidHandshake) as info:
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
    assert "TLS" not in _advice(info.value)


async def test_wss_to_a_plain_server_suggests_ws() -> None:
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello has come: answer as a plain HTTP server would
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()

    async with raw_server(plain_http) as port:
        with pytest.raises(ssl.SSLError) as info:
            await connect(f"wss://127.0.0.1:{port}/", open_timeout=TIMEOUT)
    assert not isinstance(info.value, ssl.SSLCertVerificationError)
    if sys.version_info >= (3, 11):
        assert "the server may not speak TLS: try ws://" in info.value.__notes__
    else:
        assert not hasattr(info.value, "__notes__")


async def test_an_untrusted_ca_suggests_client_context(server_ssl: ssl.SSLContext) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await connect(f"wss://127.0.0.1:{port_of(server)}/", open_timeout=TIMEOUT)
    assert "unable to get local issuer certificate" in str(info.value)  # OpenSSL's message is kept
    if sys.version_info >= (3, 11):
        (note,) = info.value.__notes__
        assert "ssl=wsskit.tls.client_context(cafile=" in note


async def test_a_wrong_host_name_gets_no_ca_advice(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    # The dev certificate names localhost, 127.0.0.1 and ::1: a trusted CA, a wrong name.
    async with serve(echo, "127.0.0.2", 0, ssl=server_ssl) as server:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await connect(f"wss://127.0.0.2:{port_of(server)}/", ssl=client_ssl, open_timeout=TIMEOUT)
    assert "mismatch" in str(info.value)
    assert getattr(info.value, "__notes__", []) == []
