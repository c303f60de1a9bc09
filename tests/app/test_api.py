"""`POST /api/publish` and `--config` on a real `wsskit serve` process, over real TLS sockets."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection as PeerConnection
from websockets.asyncio.client import connect as peer_connect
from websockets.typing import Subprotocol

from tests.channels.redis_server import RedisServer
from tests.serve_process import ServeProcess

SUBPROTOCOLS = [Subprotocol("wsskit.channels.v1")]
FULL = "full-access-token-0123456789"
CHAT_ONLY = "chat-only-token-0123456789"

CONFIG = f"""
[[api.tokens]]
token = "{FULL}"
subject = "backend"

[[api.tokens]]
token = "{CHAT_ONLY}"
subject = "chat-bot"
namespaces = ["chat"]
"""


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp_path = tmp_path_factory.mktemp("api")
    config = tmp_path / "wsskit.toml"
    config.write_text(CONFIG, "utf-8")
    server = ServeProcess(tmp_path, "--config", str(config))
    yield server
    assert server.stop() == 0


def _http(server: ServeProcess, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` over TLS, read to the end of the connection, return status, headers, body."""
    context = ssl.create_default_context(cafile=server.ca_path())
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert int(headers["Content-Length"]) == len(body), response  # one response, nothing after it
    return int(status_line.split(" ")[1]), headers, body


def _post(
    body: bytes | str | Mapping[str, object],
    token: str | None = FULL,
    *,
    content_type: str = "application/json",
    extra: str = "",
    method: str = "POST",
) -> bytes:
    if isinstance(body, Mapping):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = f"{method} /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    head += extra + f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


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


async def test_published_over_http_reaches_a_subscriber_once(api_server: ServeProcess) -> None:
    context = ssl.create_default_context(cafile=api_server.ca_path())
    uri = f"wss://127.0.0.1:{api_server.port}/channels"
    async with peer_connect(uri, ssl=context, subprotocols=SUBPROTOCOLS) as ws:
        reply = await _command(ws, {"id": 1, "cmd": "subscribe", "channel": "alerts"})
        assert "result" in reply, reply
        message = {"channel": "alerts", "data": {"level": "red", "n": [1, 2]}, "idempotency_key": "k-1"}
        status, headers, body = _http(api_server, _post(message))
        assert (status, headers["Content-Type"]) == (200, "application/json"), body
        first = json.loads(body)
        assert (first["channel"], first["offset"]) == ("alerts", 1)
        assert isinstance(first["epoch"], str) and first["epoch"]
        push = await _next_pub(ws)
        assert (push["channel"], push["offset"], push["data"]) == ("alerts", 1, {"level": "red", "n": [1, 2]})
        # A retry with the same key is stored once: same offset, no second push.
        status, _, body = _http(api_server, _post(message))
        assert (status, json.loads(body)) == (200, first)
        status, _, body = _http(api_server, _post({"channel": "alerts", "data": "next"}))
        assert status == 200 and json.loads(body)["offset"] == 2
        push = await _next_pub(ws)
        assert (push["offset"], push["data"]) == (2, "next")
    api_server.wait_for("backend published to alerts")


def test_chat_only_token_publishes_into_chat(api_server: ServeProcess) -> None:
    status, _, body = _http(api_server, _post({"channel": "chat:lobby", "data": 1}, CHAT_ONLY))
    assert status == 200, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "needle"),
    [
        (_post({"channel": "alerts", "data": 1}, None), 401, b"no credentials"),
        (_post({"channel": "alerts", "data": 1}, "wrong-token-0123456789"), 401, b"token"),
        (_post({"channel": "alerts", "data": 1}, CHAT_ONLY), 403, b"namespace ''"),
        (_post("{not json"), 400, b"not JSON"),
        (_post("[1, 2]"), 400, b"JSON object"),
        (_post('{"channel": "alerts", "data": NaN}'), 400, b"not JSON"),
        (_post({"channel": "alerts"}), 400, b"'data' is missing"),
        (_post({"channel": "", "data": 1}), 400, b"'channel'"),
        (_post({"channel": "alerts", "data": 1, "extra": 2}), 400, b"unknown field 'extra'"),
        (_post({"channel": "alerts", "data": 1, "idempotency_key": 5}), 400, b"idempotency_key"),
        # The same rule as over /channels: 1 to 128 printable ASCII, no space.
        (_post({"channel": "alerts", "data": 1, "idempotency_key": "a" * 129}), 400, b"idempotency_key"),
        (_post({"channel": "alerts", "data": 1, "idempotency_key": "two words"}), 400, b"idempotency_key"),
        (_post({"channel": "chat:bad name!", "data": 1}), 400, b"channel"),
        (_post({"channel": "nowhere:x", "data": 1}), 404, b"no namespace"),
        (_post({"channel": "alerts", "data": 1}, extra="Origin: https://evil.example\r\n"), 403, b"origin"),
        (_post({"channel": "alerts", "data": 1}, content_type="text/plain"), 415, b"JSON"),
        (_post("", method="PUT"), 405, b"use POST"),
        (b"GET /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, b"use POST"),
        (b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 411, b"Content-Length"),
        (
            b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            b"Transfer-Encoding",
        ),
        (
            b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            400,
            b"Content-Length",
        ),
    ],
)
def test_error_statuses(api_server: ServeProcess, request_bytes: bytes, status: int, needle: bytes) -> None:
    got, headers, body = _http(api_server, request_bytes)
    assert got == status, body
    assert needle in body
    if status == 401:
        assert headers["WWW-Authenticate"].startswith('Bearer realm="wsskit api"')
        if b"wrong-token" in request_bytes:
            assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    if status == 405:
        assert headers["Allow"] == "POST"


def test_own_origin_may_post(api_server: ServeProcess) -> None:
    origin = f"Origin: https://127.0.0.1:{api_server.port}\r\n"
    status, _, body = _http(api_server, _post({"channel": "alerts", "data": 1}, extra=origin))
    assert status == 200, body


def test_too_large_body_is_refused_before_it_is_sent(api_server: ServeProcess) -> None:
    # Only the head goes out: a server that waited for the 70 000 bytes would
    # time this read out instead of answering.
    head = b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 70000\r\n\r\n"
    status, _, body = _http(api_server, head)
    assert status == 413 and b"larger than 65536" in body


def test_bytes_after_the_body_are_never_a_second_request(api_server: ServeProcess) -> None:
    smuggled = b"GET /wsskit.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    status, _, body = _http(api_server, _post({"channel": "alerts", "data": "x"}) + smuggled)
    # _http checked that the connection ended right after this one response.
    assert status == 200 and b"offset" in body and b"WsskitChannels" not in body


def test_api_is_off_without_tokens(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path)
    try:
        status, _, body = _http(server, _post({"channel": "alerts", "data": 1}))
        assert status == 404 and b"no endpoint at /api/publish" in body
    finally:
        assert server.stop() == 0


def test_api_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSSKIT_API_TOKEN", FULL)
    server = ServeProcess(tmp_path)
    try:
        status, _, body = _http(server, _post({"channel": "alerts", "data": 1}))
        assert status == 200, body
    finally:
        assert server.stop() == 0


async def test_backplane_outage_answers_503(tmp_path: Path, redis: RedisServer) -> None:
    server = ServeProcess(tmp_path, "--backplane", redis.url, "--api-token", FULL)
    try:
        status, _, _ = _http(server, _post({"channel": "alerts", "data": 1}))
        assert status == 200
        await redis.stop()
        status, headers, body = _http(server, _post({"channel": "alerts", "data": 2}))
        assert status == 503 and headers["Retry-After"] == "5", body
        assert b"backplane is unavailable" in body
    finally:
        assert server.stop() == 0


AUTH_CONFIG = """
[[namespaces]]
name = "room"
history_size = 2
publish = "authenticated"

[auth]
required = true

[[auth.tokens]]
token_env = "TEST_ALICE_TOKEN"
subject = "alice"
"""


async def test_config_file_sets_namespaces_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALICE_TOKEN", "alice-token-0123456789")
    config = tmp_path / "wsskit.toml"
    config.write_text(AUTH_CONFIG, "utf-8")
    server = ServeProcess(tmp_path, "--config", str(config), "--no-tls")
    try:
        uri = f"ws://127.0.0.1:{server.port}/channels"
        with pytest.raises(websockets.InvalidStatus) as info:
            async with peer_connect(uri, subprotocols=SUBPROTOCOLS):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"] == 'Bearer realm="wsskit"'
        headers = {"Authorization": "Bearer alice-token-0123456789"}
        async with peer_connect(uri, subprotocols=SUBPROTOCOLS, additional_headers=headers) as ws:
            for i in range(3):
                sent = {"id": i + 1, "cmd": "publish", "channel": "room:a", "data": i}
                assert "result" in await _command(ws, sent)
            # history_size = 2 from the file: the first publication is gone.
            history = await _command(ws, {"id": 9, "cmd": "history", "channel": "room:a"})
            result = history["result"]
            assert isinstance(result, dict)
            assert [pub["data"] for pub in result["publications"]] == [1, 2]
            # The built-in chat namespace is gone with the file's namespaces.
            reply = await _command(ws, {"id": 10, "cmd": "subscribe", "channel": "chat:lobby"})
            assert "error" in reply, reply
    finally:
        assert server.stop() == 0
