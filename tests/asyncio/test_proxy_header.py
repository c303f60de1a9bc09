"""serve(proxy_protocol=..., trusted_proxies=...): PROXY headers over real TCP and TLS on loopback.

Raw clients play the proxy: they write a PROXY header, then (for wss://)
start TLS on the same connection and open a WebSocket. The handler answers
with what the server saw as ``remote_address``. The last test goes through
a real HAProxy with ``send-proxy-v2``.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.asyncio.raw import port_of, read_frame, read_head, write_frame
from wsskit.asyncio import Server, ServerConnection, connect, serve
from wsskit.asyncio.proxy_header import ProxyHeaderReader
from wsskit.guards import ConnectionRateLimiter
from wsskit.protocol.frames import Opcode
from wsskit.protocol.handshake import make_key
from wsskit.protocol.proxy_header import V2_SIGNATURE

LOGGER = "wsskit.server"


def v1(source: str, port: int, destination: str = "10.0.0.2", dport: int = 443) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {destination} {port} {dport}\r\n".encode()


def v2(
    source: str, port: int, destination: str = "10.0.0.2", dport: int = 443, *, local: bool = False
) -> bytes:
    if local:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", port, dport)
    # A TLV, as HAProxy sends (PP2_TYPE_ALPN): skipped.
    block += b"\x01\x00\x08http/1.1"
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


async def tell_address(ws: ServerConnection) -> None:
    """Send what the server sees, then echo until the client leaves."""
    await ws.send(
        json.dumps(
            {"remote": list(ws.remote_address[:2]), "proxy": ws.proxy_address and list(ws.proxy_address[:2])}
        )
    )
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def proxied_server(**options: Any) -> AsyncIterator[Server]:
    settings: dict[str, Any] = {
        "proxy_protocol": "v1v2",
        "trusted_proxies": ["127.0.0.0/8", "::1"],
        "ping_interval": None,
        "close_timeout": 2,
        **options,
    }
    async with serve(tell_address, "127.0.0.1", 0, **settings) as server:
        yield server


class RawWebSocket:
    """One raw client connection that played the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    async def seen(self) -> dict[str, Any]:
        opcode, payload, _ = await asyncio.wait_for(read_frame(self.reader), 30)
        assert opcode == Opcode.TEXT
        return dict(json.loads(payload))

    async def echo(self, text: str) -> str:
        write_frame(self.writer, Opcode.TEXT, text.encode(), mask=True)
        opcode, payload, _ = await asyncio.wait_for(read_frame(self.reader), 30)
        assert opcode == Opcode.TEXT
        return payload.decode()

    @property
    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    def abort(self) -> None:
        self.writer.transport.abort()


async def open_proxied(
    port: int,
    header: bytes,
    *,
    client_ssl: ssl.SSLContext | None = None,
    byte_by_byte: bool = False,
) -> RawWebSocket:
    """Connect, write ``header`` (one byte per write with ``byte_by_byte``), then TLS and the upgrade."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if byte_by_byte:
        for byte in header:
            await loop.sock_sendall(sock, bytes([byte]))
            await asyncio.sleep(0.002)  # so the bytes reach the server in separate reads
    else:
        await loop.sock_sendall(sock, header)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=client_ssl, server_hostname="localhost" if client_ssl else None
    )
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {make_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(read_head(reader), 30)
    return RawWebSocket(reader, writer, head)


async def closed_without_answer(port: int, data: bytes) -> bytes:
    """Write ``data`` and read until the server closes; what it sent (nothing expected)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), 30)
        except ConnectionResetError:
            return b""
    finally:
        writer.transport.abort()


async def until_empty(server: Server) -> None:
    for _ in range(3000):
        if not server._all:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(server._all)} connections left")


HEADERS = {
    "v1-ipv4": (v1("203.0.113.7", 51234), ["203.0.113.7", 51234]),
    "v1-ipv6": (v1("2001:db8::7", 40000, "2001:db8::2"), ["2001:db8::7", 40000]),
    "v2-ipv4": (v2("198.51.100.9", 1234), ["198.51.100.9", 1234]),
    "v2-ipv6": (v2("2001:db8:0:0::9", 65535, "2001:db8::2"), ["2001:db8::9", 65535]),
}


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("case", list(HEADERS))
async def test_handler_sees_the_client_address(
    case: str, secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    header, expected = HEADERS[case]
    async with proxied_server(ssl=server_ssl if secure else None) as server:
        ws = await open_proxied(port_of(server), header, client_ssl=client_ssl if secure else None)
        try:
            assert ws.status == 101
            seen = await ws.seen()
            assert seen["remote"] == expected
            assert seen["proxy"] == ["127.0.0.1", ws.local_port]
            assert await ws.echo("after the header") == "after the header"
        finally:
            ws.abort()


async def test_reader_is_gone_after_the_header(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    # Nothing of the PROXY layer stays with an open connection.
    async with proxied_server(ssl=server_ssl) as server:
        ws = await open_proxied(port_of(server), v2("192.0.2.8", 8), client_ssl=client_ssl)
        try:
            assert (await ws.seen())["remote"] == ["192.0.2.8", 8]
            gc.collect()
            assert [o for o in gc.get_objects() if isinstance(o, ProxyHeaderReader)] == []
            (connection,) = server.connections
            assert connection.remote_address == ("192.0.2.8", 8)
        finally:
            ws.abort()


@pytest.mark.parametrize(
    "header", [v2("", 0, local=True), b"PROXY UNKNOWN\r\n"], ids=["v2-local", "v1-unknown"]
)
async def test_local_and_unknown_keep_the_real_peer(header: bytes) -> None:
    async with proxied_server() as server:
        ws = await open_proxied(port_of(server), header)
        try:
            seen = await ws.seen()
            assert seen == {"remote": ["127.0.0.1", ws.local_port], "proxy": None}
        finally:
            ws.abort()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_header_split_into_single_bytes(
    secure: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    async with proxied_server(ssl=server_ssl if secure else None) as server:
        for header, expected in (HEADERS["v1-ipv6"], HEADERS["v2-ipv4"]):
            ws = await open_proxied(
                port_of(server), header, client_ssl=client_ssl if secure else None, byte_by_byte=True
            )
            try:
                assert (await ws.seen())["remote"] == expected
            finally:
                ws.abort()


async def test_connection_limiter_counts_the_proxied_client() -> None:
    # One connection per IP: two clients through the same proxy get in, a
    # second one from the same client is refused (503: the per-IP cap).
    limiter = ConnectionRateLimiter(per_ip_rate=1000, per_ip_burst=1000, max_per_ip=1)
    async with proxied_server(connection_limiter=limiter) as server:
        port = port_of(server)
        first = await open_proxied(port, v2("192.0.2.1", 1000))
        second = await open_proxied(port, v1("192.0.2.2", 2000))
        try:
            assert (first.status, second.status) == (101, 101)
            assert (await first.seen())["remote"] == ["192.0.2.1", 1000]
            assert (await second.seen())["remote"] == ["192.0.2.2", 2000]
            again = await open_proxied(port, v1("192.0.2.1", 3000))
            again.abort()
            assert again.status == 503
        finally:
            first.abort()
            second.abort()
        await until_empty(server)
        # The slots are released under the proxied address: it may come back.
        back = await open_proxied(port, v1("192.0.2.1", 4000))
        back.abort()
        assert back.status == 101


async def test_untrusted_peer_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with proxied_server(trusted_proxies=["192.0.2.0/24"]) as server:
        assert await closed_without_answer(port_of(server), v1("203.0.113.7", 1)) == b""
        await until_empty(server)
    assert any("PROXY header from untrusted peer" in r.getMessage() for r in caplog.records)
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)


MALFORMED = {
    "plain-http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03" + b"\x00" * 32,
    "v1-bad-address": b"PROXY TCP4 1.2.3.999 10.0.0.2 1 2\r\n",
    "v1-too-long": b"PROXY TCP6 " + b"f" * 200,
    "v2-bad-command": V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\x00" * 12,
    "v2-over-the-bound": V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\x00" * 100,
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_header_closes_only_that_connection(
    case: str, caplog: pytest.LogCaptureFixture, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with proxied_server(ssl=server_ssl) as server:
        neighbour = await open_proxied(port_of(server), v2("192.0.2.5", 5), client_ssl=client_ssl)
        try:
            assert (await neighbour.seen())["remote"] == ["192.0.2.5", 5]
            assert await closed_without_answer(port_of(server), MALFORMED[case]) == b""
            assert await neighbour.echo("still here") == "still here"
        finally:
            neighbour.abort()
    refusals = [r for r in caplog.records if "invalid PROXY header" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.INFO
    assert refusals[0].exc_info is None


async def test_slow_header_hits_the_open_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with proxied_server(open_timeout=0.5) as server:
        assert await closed_without_answer(port_of(server), b"PROXY TCP4 192.0.2.1 ") == b""
        await until_empty(server)
    assert any("no complete PROXY header within 0.5 s" in r.getMessage() for r in caplog.records)


async def test_without_the_option_a_header_is_just_bad_http() -> None:
    async with serve(tell_address, "127.0.0.1", 0, ping_interval=None) as server:
        answer = await closed_without_answer(
            port_of(server), v1("192.0.2.1", 1) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"proxy_protocol": "v1v2"}, "needs trusted_proxies"),
        ({"proxy_protocol": "v3", "trusted_proxies": ["10.0.0.0/8"]}, "proxy_protocol must be one of"),
        ({"proxy_protocol": True, "trusted_proxies": ["10.0.0.0/8"]}, "proxy_protocol must be one of"),
        ({"trusted_proxies": ["10.0.0.0/8"]}, "only with proxy_protocol"),
        ({"proxy_protocol": "v2", "trusted_proxies": ["10.0.0.1/8"]}, "host bits set"),
        ({"proxy_protocol": "v2", "trusted_proxies": "10.0.0.0/8"}, "not one string"),
        ({"proxy_protocol": "v2", "trusted_proxies": ["10.0.0.0/8"], "tls_transport": "asyncio"}, "wsskit"),
    ],
)
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        serve(tell_address, "127.0.0.1", 0, **options)


async def test_version_restriction() -> None:
    async with proxied_server(proxy_protocol="v2") as server:
        assert await closed_without_answer(port_of(server), v1("192.0.2.1", 1)) == b""
        ws = await open_proxied(port_of(server), v2("192.0.2.1", 1))
        try:
            assert (await ws.seen())["remote"] == ["192.0.2.1", 1]
        finally:
            ws.abort()


# -- a real HAProxy -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def haproxy_binary() -> str:
    path = shutil.which("haproxy")
    if path is None:
        message = "haproxy is not installed (apt-get install haproxy)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def haproxy_front(
    haproxy_binary: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[int, int]]:
    """(front port, back port): HAProxy on the front port, tcp mode, send-proxy-v2 to the back port."""
    front, back = _free_port(), _free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 100\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
        f"frontend fe\n  bind 127.0.0.1:{front}\n  default_backend be\n"
        f"backend be\n  server wsskit 127.0.0.1:{back} send-proxy-v2\n"
    )
    process = subprocess.Popen(
        [haproxy_binary, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(1000):
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                pytest.fail(f"haproxy exited with {process.returncode}: {output}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", front)) == 0:
                    break
            time.sleep(0.01)
        yield front, back
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_through_haproxy_send_proxy_v2(
    haproxy_front: tuple[int, int], server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    front, back = haproxy_front
    limiter = ConnectionRateLimiter(per_ip_rate=1000, per_ip_burst=1000, max_per_ip=4)
    server = serve(
        tell_address,
        "127.0.0.1",
        back,
        ssl=server_ssl,
        proxy_protocol="v2",
        trusted_proxies=["127.0.0.1"],
        connection_limiter=limiter,
        ping_interval=None,
    )
    uri = f"wss://127.0.0.1:{front}/"
    async with server, connect(uri, ssl=client_ssl, ping_interval=None, proxy=None) as ws:
        seen = json.loads(await asyncio.wait_for(ws.recv(), 30))
        client_port = ws.local_address[1]
        # The server saw this client's own port, not HAProxy's.
        assert seen["remote"] == ["127.0.0.1", client_port]
        assert seen["proxy"][0] == "127.0.0.1"
        assert seen["proxy"][1] != client_port
        await ws.send("through haproxy")
        assert await asyncio.wait_for(ws.recv(), 30) == "through haproxy"


# -- wsskit serve: options and config file -----------------------------------------


def serve_config(argv: list[str], tmp_path: Path, toml: str | None = None) -> Any:
    from wsskit.cli import _parser, _serve_config

    if toml is not None:
        (tmp_path / "wsskit.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "wsskit.toml")]
    return _serve_config(_parser().parse_args(["serve", *argv]), {})


def test_cli_options(tmp_path: Path) -> None:
    config = serve_config(
        ["--proxy-protocol", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"], tmp_path
    )
    assert (config.proxy_protocol, config.trusted_proxies) == ("v1v2", ("10.0.0.0/8", "::1"))
    config = serve_config(["--proxy-protocol", "v2", "--trusted-proxy", "10.0.0.0/8"], tmp_path)
    assert config.proxy_protocol == "v2"
    assert serve_config([], tmp_path).proxy_protocol is None


def test_config_file(tmp_path: Path) -> None:
    config = serve_config([], tmp_path, 'proxy_protocol = "v1"\ntrusted_proxies = ["192.0.2.0/24"]\n')
    assert (config.proxy_protocol, config.trusted_proxies) == ("v1", ("192.0.2.0/24",))
    config = serve_config([], tmp_path, 'proxy_protocol = true\ntrusted_proxies = ["192.0.2.0/24"]\n')
    assert config.proxy_protocol == "v1v2"
    # The command line wins over the file.
    config = serve_config(
        ["--proxy-protocol", "v2"], tmp_path, 'proxy_protocol = "v1"\ntrusted_proxies = ["::1"]\n'
    )
    assert (config.proxy_protocol, config.trusted_proxies) == ("v2", ("::1",))


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (["--proxy-protocol"], None, "needs --trusted-proxy"),
        (["--trusted-proxy", "10.0.0.0/8"], None, "only with --proxy-protocol"),
        (["--proxy-protocol", "--trusted-proxy", "10.0.0.300/32"], None, "invalid trusted proxy network"),
        ([], 'proxy_protocol = "v3"\n', "'proxy_protocol' must be one of"),
        ([], 'proxy_protocol = "v2"\ntrusted_proxies = "10.0.0.0/8"\n', "'trusted_proxies' must be an array"),
        ([], 'proxy_protocol = "v2"\ntrusted_proxies = ["10.0.0.1/8"]\n', "host bits set"),
    ],
)
def test_bad_settings(argv: list[str], toml: str | None, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        serve_config(argv, tmp_path, toml)


def test_wsskit_serve_logs_the_proxied_client(tmp_path: Path) -> None:
    from tests.serve_process import ServeProcess

    server = ServeProcess(tmp_path, "--no-tls", "--proxy-protocol", "v2", "--trusted-proxy", "127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            request = (
                f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {make_key()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            sock.sendall(v2("192.0.2.44", 5555) + request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head
        server.wait_for("192.0.2.44:5555 opened /echo")
    finally:
        server.stop()
    assert any("PROXY protocol (v2) required, from 127.0.0.1 only" in line for line in server.lines)
