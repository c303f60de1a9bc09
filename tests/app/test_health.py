"""``/healthz`` and ``/readyz`` of a real ``wsskit serve``, asked the way load balancers ask."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.redis_server import RedisServer, free_port, redis_server_binary
from tests.serve_process import ServeProcess, http_exchange
from wsskit.app.health import Health
from wsskit.protocol.events import Request
from wsskit.protocol.headers import Headers


def ask(
    server: ServeProcess, path: str, method: str = "GET", *, tls: bool = True
) -> tuple[int, dict[str, str], bytes]:
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n"
    return http_exchange(server.port, request.encode("ascii"), server.ca_path() if tls else None)


def upgrade(server: ServeProcess, path: str) -> int:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    # A 101 keeps the connection open: read the status line only.
    context = ssl.create_default_context(cafile=server.ca_path())
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=15) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as stream,
    ):
        stream.sendall(request.encode("ascii"))
        line = stream.recv(65536).split(b"\r\n", 1)[0]
    return int(line.split()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path_factory.mktemp("health"))
    yield server
    assert server.stop() == 0


def test_healthz_says_ok_uncached(served: ServeProcess) -> None:
    status, headers, body = ask(served, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"].startswith("text/plain")
    # Not a worker of --workers: no worker named.
    assert "x-wsskit-worker" not in headers


def test_readyz_says_ready_uncached(served: ServeProcess) -> None:
    status, headers, body = ask(served, "/readyz")
    assert (status, body) == (200, b"ready\n")
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_has_the_status_and_no_body(served: ServeProcess, path: str) -> None:
    status, headers, body = ask(served, path, "HEAD")
    assert (status, body) == (200, b"")
    assert headers["cache-control"] == "no-store"


def test_other_methods_get_405(served: ServeProcess) -> None:
    request = (
        f"POST /readyz HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n"
    )
    status, headers, _ = http_exchange(served.port, request.encode("ascii"), served.ca_path())
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_http_1_0_checks_without_host_are_answered(served: ServeProcess, path: str) -> None:
    # HAProxy's "option httpchk GET /readyz" sends HTTP/1.0 and no Host.
    request = f"GET {path} HTTP/1.0\r\n\r\n".encode("ascii")
    status, headers, _ = http_exchange(served.port, request, served.ca_path())
    assert status == 200
    assert headers["cache-control"] == "no-store"


def test_an_http_1_0_upgrade_gets_505(served: ServeProcess) -> None:
    request = (
        f"GET /echo HTTP/1.0\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    status, _, body = http_exchange(served.port, request.encode("ascii"), served.ca_path())
    assert status == 505
    assert b"needs HTTP/1.1" in body


def test_query_string_is_ignored(served: ServeProcess) -> None:
    # Some checkers add a cache buster.
    assert ask(served, "/healthz?t=123")[0] == 200


def test_health_checks_are_not_rate_limited(tmp_path: Path) -> None:
    # One new connection per second (burst 2) from an address: the checks
    # below exceed that, yet every one is answered; an upgrade is refused.
    server = ServeProcess(tmp_path, "--connection-rate", "1")
    try:
        statuses = [ask(server, "/readyz" if i % 2 else "/healthz")[0] for i in range(12)]
        assert statuses == [200] * 12
        assert upgrade(server, "/echo") == 429  # the limiter is on, and exhausted
    finally:
        assert server.stop() == 0


def test_plain_ws_serves_health_too(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, "--no-tls")
    try:
        assert ask(server, "/readyz", tls=False)[:3:2] == (200, b"ready\n")
    finally:
        assert server.stop() == 0


def _poll(server: ServeProcess, path: str, wanted: int, *, attempts: int = 300) -> tuple[int, bytes]:
    # Ask until the status is ``wanted`` (a bounded number of times, 0.1 s apart).
    status, body = 0, b""
    for _ in range(attempts):
        status, _, body = ask(server, path)
        if status == wanted:
            break
        time.sleep(0.1)
    return status, body


def test_readyz_503_while_draining_and_healthz_still_ok(tmp_path: Path) -> None:
    # The drain delay keeps the port open while readiness is already off.
    server = ServeProcess(tmp_path, "--drain-delay", "30", "--drain-timeout", "60")
    try:
        assert ask(server, "/readyz")[0] == 200
        server.proc.send_signal(signal.SIGTERM)
        assert _poll(server, "/readyz", 503) == (503, b"draining\n")
        assert ask(server, "/healthz")[:3:2] == (200, b"ok\n")
        server.wait_for("draining: not ready")
    finally:
        # A second signal ends the delay at once.
        assert server.stop(signal.SIGINT) == 0
    assert any("second signal" in line for line in server.lines)


async def test_readyz_follows_the_backplane(tmp_path: Path) -> None:
    # A node whose broker is down serves (alive) but is not ready, and
    # becomes ready once the broker is up.
    redis = RedisServer(redis_server_binary(), free_port())
    url = redis.url
    server = await asyncio.to_thread(ServeProcess, tmp_path, "--backplane", url)
    try:
        status, _, body = await asyncio.to_thread(ask, server, "/readyz")
        assert (status, body) == (503, b"backplane unavailable\n")
        assert (await asyncio.to_thread(ask, server, "/healthz"))[0] == 200
        await redis.start()
        try:
            assert await asyncio.to_thread(_poll, server, "/readyz", 200) == (200, b"ready\n")
            await redis.stop()
            status, body = await asyncio.to_thread(_poll, server, "/readyz", 503)
            assert (status, body) == (503, b"backplane unavailable\n")
        finally:
            await redis.stop()
    finally:
        assert await asyncio.to_thread(server.stop) == 0


# -- the answers themselves, without a server ------------------------------------------


class _Hub:
    ready = True


def _request(path: str, method: str = "GET") -> Request:
    return Request(path, Headers([("Host", "example.com")]), method=method)


def test_unrelated_paths_are_left_alone() -> None:
    assert Health(_Hub()).answer(_request("/echo")) is None


def test_draining_wins_over_backplane_reason() -> None:
    hub = _Hub()
    health = Health(hub, worker="")
    hub.ready = False
    assert health.unready_reason() == "backplane unavailable"
    health.start_draining()
    answer = health.answer(_request("/readyz"))
    assert answer is not None and (answer.status, answer.body) == (503, b"draining\n")


def test_worker_index_is_named() -> None:
    answer = Health(_Hub(), worker="3").answer(_request("/healthz"))
    assert answer is not None and answer.headers["X-Wsskit-Worker"] == "3"


def test_a_hub_without_ready_counts_as_ready() -> None:
    answer = Health(object(), worker="").answer(_request("/readyz"))  # type: ignore[arg-type]
    assert answer is not None and answer.status == 200
