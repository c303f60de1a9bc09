"""`wsskit serve` as a user runs it: a real process, real TLS, a peer library as the client."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import ConnectionClosed as PeerConnectionClosed

from tests.serve_process import ServeProcess


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def _client_context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def test_startup_lines_tell_where_the_ca_is(served: ServeProcess) -> None:
    text = "\n".join(served.lines)
    assert f"wsskit: serving wss://127.0.0.1:{served.port} (echo at /echo, channels at /channels" in text
    assert "dev certificate for localhost, 127.0.0.1, ::1 signed by the local CA at" in text
    assert Path(served.ca_path()).is_file()


async def test_peer_library_echoes_text_and_binary_over_wss(served: ServeProcess) -> None:
    uri = f"wss://127.0.0.1:{served.port}/echo"
    async with peer_connect(uri, ssl=_client_context(served.ca_path())) as ws:
        await ws.send("Hello World!")
        assert await ws.recv() == "Hello World!"
        await ws.send(b"\x00\x01\xfe\xff")
        assert await ws.recv() == b"\x00\x01\xfe\xff"
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
    served.wait_for("closed 1000")
    opened = [line for line in served.lines if "opened /echo" in line]
    assert len(opened) == 1


async def test_localhost_name_verifies_too(served: ServeProcess) -> None:
    async with peer_connect(
        f"wss://localhost:{served.port}/echo", ssl=_client_context(served.ca_path())
    ) as ws:
        await ws.send("by name")
        assert await ws.recv() == "by name"


async def test_untrusting_client_is_refused(served: ServeProcess) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        async with peer_connect(f"wss://127.0.0.1:{served.port}/echo", ssl=ssl.create_default_context()):
            pass


def _raw_http(port: int, ca: str, request: bytes) -> bytes:
    context = _client_context(ca)
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_plain_get_gets_426_and_unknown_path_404(served: ServeProcess) -> None:
    ca = served.ca_path()
    response = _raw_http(served.port, ca, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13" in response
    response = _raw_http(served.port, ca, b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404 ")
    response = _raw_http(
        served.port, ca, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 405 ")
    # A POST must say how long its body is (chunked bodies are not read).
    response = _raw_http(served.port, ca, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 411 ")
    response = _raw_http(
        served.port,
        ca,
        b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 426 ")


UPGRADE = (
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize(
    ("request_text", "status"),
    [
        ("GET /echo?" + "a" * 10_000 + " HTTP/1.1\r\n" + UPGRADE + "\r\n", 414),
        ("GET /echo HTTP/1.1\r\n" + UPGRADE + "".join(f"X-{i}: v\r\n" for i in range(2000)) + "\r\n", 431),
        ("GET /echo HTTP/1.1\r\n" + UPGRADE + "X-Big: " + "b" * 10_000 + "\r\n\r\n", 431),
        ("GET /echo HTTP/1.1\r\n" + UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short") + "\r\n", 400),
        ("GET /echo HTTP/1.1\r\n" + UPGRADE.replace("Host: 127.0.0.1\r\n", "") + "\r\n", 400),
        ("DELETE /echo HTTP/1.1\r\n" + UPGRADE + "\r\n", 405),
        ("GET /echo HTTP/1.0\r\n" + UPGRADE + "\r\n", 505),
        ("NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
def test_bad_handshakes_get_their_status(served: ServeProcess, request_text: str, status: int) -> None:
    response = _raw_http(served.port, served.ca_path(), request_text.encode())
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:80]


async def test_violating_frame_closes_that_connection_only(served: ServeProcess) -> None:
    context = _client_context(served.ca_path())
    async with peer_connect(f"wss://127.0.0.1:{served.port}/echo", ssl=context) as healthy:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", served.port, ssl=context, server_hostname="127.0.0.1"
        )
        writer.write(
            b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(b"\x81\x02hi")  # an unmasked client frame: RFC 6455 §5.1 says fail with 1002
        header = await reader.readexactly(2)
        assert header[0] == 0x88  # an unmasked Close frame
        payload = await reader.readexactly(header[1])
        assert payload[:2] == b"\x03\xea"  # 1002
        assert b"not masked" in payload[2:]
        assert await reader.read() == b""  # and the server closes the TCP connection
        writer.close()
        await healthy.send("still here")
        assert await healthy.recv() == "still here"
    served.wait_for("closed 1002")  # the log line carries the code the violation got


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0(served: ServeProcess, sig: int) -> None:
    context = _client_context(served.ca_path())
    async with peer_connect(f"wss://127.0.0.1:{served.port}/echo", ssl=context) as ws:
        await ws.send("x")
        await ws.recv()
        loop = asyncio.get_running_loop()
        code = loop.run_in_executor(None, served.stop, sig)
        with pytest.raises(PeerConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await code == 0


def test_no_tls_warns_beyond_loopback(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--no-tls", "--host", "0.0.0.0")
    try:
        assert any("warning" in line and "plain ws://" in line for line in server.lines)
        assert any(f"serving ws://0.0.0.0:{server.port}" in line for line in server.lines)
    finally:
        assert server.stop() == 0


async def test_no_tls_on_loopback_is_quiet_and_serves_ws(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--no-tls", "--max-size", "1KiB")
    try:
        assert not any("warning" in line for line in server.lines)
        async with peer_connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            await ws.send("a" * 1024)
            assert await ws.recv() == "a" * 1024
            await ws.send("a" * 1025)
            with pytest.raises(PeerConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        assert server.stop() == 0


def test_websockets_is_the_peer_library() -> None:
    # The interop claims above are only worth something against the real library.
    assert int(websockets.__version__.split(".")[0]) >= 13


async def test_own_origin_allowed_and_foreign_origin_refused(served: ServeProcess) -> None:
    context = _client_context(served.ca_path())
    uri = f"wss://127.0.0.1:{served.port}/echo"
    for origin in (f"https://127.0.0.1:{served.port}", f"https://localhost:{served.port}"):
        async with peer_connect(uri, ssl=context, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send("same origin")
            assert await ws.recv() == "same origin"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with peer_connect(uri, ssl=context, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403


async def test_allow_origin_option(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--no-tls", "--allow-origin", "https://app.example.com")
    try:
        uri = f"ws://127.0.0.1:{server.port}/echo"
        async with peer_connect(uri, origin="https://app.example.com") as ws:  # type: ignore[arg-type]
            await ws.send("listed")
            assert await ws.recv() == "listed"
        with pytest.raises(websockets.InvalidStatus):
            async with peer_connect(uri, origin="https://other.example.com"):  # type: ignore[arg-type]
                pass
    finally:
        assert server.stop() == 0


def _serial_seen(port: int, ca: str) -> int:
    context = _client_context(ca)
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


async def test_replaced_certificate_is_served_after_sighup_without_dropping_connections(
    tmp_path: Path,
) -> None:
    import shutil

    from wsskit.certs import ensure_dev_certificates

    pki = tmp_path / "pki"
    paths, _ = ensure_dev_certificates(pki)
    cert, key = tmp_path / "served.pem", tmp_path / "served-key.pem"
    shutil.copy(paths.cert, cert)
    shutil.copy(paths.key, key)
    server = ServeProcess(tmp_path, "--cert", str(cert), "--key", str(key))
    try:
        ca = str(paths.ca_cert)
        first = _serial_seen(server.port, ca)
        async with peer_connect(f"wss://127.0.0.1:{server.port}/echo", ssl=_client_context(ca)) as old:
            # A new leaf from the same CA (one more host name: a new serial), swapped in atomically.
            renewed, _ = ensure_dev_certificates(pki, hosts=("localhost", "127.0.0.1", "::1", "renewed.test"))
            for source, target in ((renewed.cert, cert), (renewed.key, key)):
                shutil.copy(source, target.with_suffix(".new"))
                target.with_suffix(".new").replace(target)
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for("loaded certificate")  # the reload's log line
            assert _serial_seen(server.port, ca) != first
            await old.send("still open")
            assert await old.recv() == "still open"
    finally:
        assert server.stop() == 0


async def test_mutual_tls_from_the_command_line(tmp_path: Path) -> None:
    from wsskit.certs import ensure_dev_certificates, issue_client_certificate

    pki = tmp_path / "pki"
    paths, _ = ensure_dev_certificates(pki)
    client_cert, client_key = issue_client_certificate("alice", pki)
    server = ServeProcess(tmp_path, "--cert-dir", str(pki), "--client-ca", str(paths.ca_cert))
    try:
        uri = f"wss://127.0.0.1:{server.port}/echo"
        anonymous = _client_context(str(paths.ca_cert))
        with pytest.raises((OSError, websockets.InvalidHandshake, EOFError)):
            async with peer_connect(uri, ssl=anonymous) as ws:
                await ws.send("no certificate")
                await ws.recv()
        with_cert = _client_context(str(paths.ca_cert))
        with_cert.load_cert_chain(client_cert, client_key)
        async with peer_connect(uri, ssl=with_cert) as ws:
            await ws.send("alice here")
            assert await ws.recv() == "alice here"
    finally:
        assert server.stop() == 0


async def test_rate_limit_options_reach_the_server(tmp_path: Path) -> None:
    server = ServeProcess(
        tmp_path, "--max-connections-per-ip", "1", "--message-rate", "3", "--connection-rate", "100"
    )
    try:
        uri = f"wss://127.0.0.1:{server.port}/echo"
        context = _client_context(server.ca_path())
        async with peer_connect(uri, ssl=context) as ws:
            # A second connection from the same IP is over the cap: 503.
            with pytest.raises(websockets.InvalidStatus) as info:
                async with peer_connect(uri, ssl=context):
                    pass
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Retry-After"] == "5"
            # Three messages a second (burst 3), then the fourth closes with 1008.
            for i in range(3):
                await ws.send(str(i))
                assert await ws.recv() == str(i)
            await ws.send("fourth")
            with pytest.raises(PeerConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "message rate exceeded")
    finally:
        server.stop()


async def test_channels_endpoint_serves_chat(served: ServeProcess) -> None:
    uri = f"wss://127.0.0.1:{served.port}/channels"
    context = _client_context(served.ca_path())
    async with (
        peer_connect(uri, ssl=context, subprotocols=["wsskit.channels.v1"]) as alice,
        peer_connect(uri, ssl=context, subprotocols=["wsskit.channels.v1"]) as bob,
    ):
        assert alice.subprotocol == "wsskit.channels.v1"
        await alice.send(json.dumps({"id": 1, "cmd": "subscribe", "channel": "chat:lobby"}))
        assert json.loads(await alice.recv())["id"] == 1
        message = {"id": 1, "cmd": "publish", "channel": "chat:lobby", "data": {"text": "hi"}}
        await bob.send(json.dumps(message))
        reply = json.loads(await bob.recv())
        assert "result" in reply, reply
        # chat:* announces joins: alice first sees her own, then the publication.
        join = json.loads(await alice.recv())
        assert (join["push"], join["channel"]) == ("join", "chat:lobby")
        push = json.loads(await alice.recv())
        assert (push["push"], push["offset"], push["data"]) == ("pub", 1, {"text": "hi"})
        # Channels outside chat:* are read-only for clients.
        await bob.send(json.dumps({"id": 2, "cmd": "publish", "channel": "news", "data": 1}))
        assert json.loads(await bob.recv())["error"]["code"] == 103
    # Draining: channel sessions are told to reconnect (4001).
    async with peer_connect(uri, ssl=context, subprotocols=["wsskit.channels.v1"]) as carol:
        served.proc.send_signal(signal.SIGTERM)
        with pytest.raises(PeerConnectionClosed) as closed:
            await carol.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    # One SIGTERM is enough; a second one would race the drain's end.
    assert await asyncio.to_thread(served.proc.wait, 15) == 0


def test_wsskit_js_is_served_as_javascript(served: ServeProcess) -> None:
    ca = served.ca_path()
    response = _raw_http(served.port, ca, b"GET /wsskit.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: text/javascript; charset=utf-8" in head
    assert b"X-Content-Type-Options: nosniff" in head
    assert b"WsskitChannels" in body and b"wsskit.channels.v1" in body
