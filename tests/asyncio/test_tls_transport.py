"""wsskit's own TLS transport (wsskit.asyncio.tls_transport), over real TLS on loopback.

Most tests drive a :class:`TLSProtocol` with a small recording protocol and
a peer written with the ssl module (an :class:`ssl.SSLObject` over a socket,
or a blocking :class:`ssl.SSLSocket` in a thread), so what goes on the wire
can be checked record by record: close_notify, alerts. The others run
``serve()`` end to end, on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest

from tests.asyncio.raw import port_of
from wsskit import tls
from wsskit.asyncio import ServerConnection, connect, loops, serve
from wsskit.asyncio.tls_transport import TLSProtocol, TLSTransport, tls_server_factory
from wsskit.certs import DevCertificates, issue_client_certificate
from wsskit.exceptions import ConnectionClosedError

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            not HAVE_UVLOOP and os.environ.get("CI") != "true",
            reason="uvloop is not installed (wsskit[speed])",
        ),
    ),
]
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]

# Generous: the machine is shared and loaded; no timing is asserted.
PATIENCE = 30.0
MIB = 2**20


def client_context(certificates: DevCertificates, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = tls.client_context(cafile=certificates.ca_cert)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


class Recorder(asyncio.Protocol):
    """An application protocol that records what its transport gives it."""

    def __init__(self) -> None:
        self.transport: TLSTransport | None = None
        self.received = bytearray()
        self.events: list[str] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.made: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_data: Callable[[Recorder], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TLSTransport)
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.on_data is not None:
            self.on_data(self)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


@asynccontextmanager
async def tls_server(
    context: ssl.SSLContext, *, handshake_timeout: float = PATIENCE
) -> AsyncIterator[tuple[int, list[Recorder]]]:
    """A TCP server running TLSProtocol over a Recorder per connection."""
    recorders: list[Recorder] = []

    def make() -> Recorder:
        recorder = Recorder()
        recorders.append(recorder)
        return recorder

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        tls_server_factory(make, context, handshake_timeout=handshake_timeout), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1], recorders
    finally:
        server.close()
        for recorder in recorders:
            if recorder.transport is not None:
                recorder.transport.abort()
        await server.wait_closed()


class BioClient:
    """A TLS client over a non-blocking socket and an SSLObject: sees every record."""

    def __init__(
        self, sock: socket.socket, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
    ):
        self.sock = sock
        self.ssl = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> BioClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = cls(
            sock, context.wrap_bio(incoming, outgoing, server_hostname="localhost"), incoming, outgoing
        )
        while True:
            try:
                client.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await client.flush()
                if not await client.receive():
                    raise ConnectionResetError("EOF during the handshake") from None
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def receive(self) -> bool:
        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), PATIENCE)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def send(self, data: bytes) -> None:
        self.ssl.write(data)
        await self.flush()

    async def read_some(self) -> bytes:
        """The next plaintext bytes (waits for them)."""
        while True:
            try:
                return self.ssl.read(65536)
            except ssl.SSLWantReadError:
                if not await self.receive():
                    raise ConnectionResetError("EOF") from None

    async def read_until_closed(self) -> tuple[bytes, str]:
        """Read until the peer ends: (data, "close_notify" | "eof" | "reset")."""
        data = bytearray()
        while True:
            try:
                chunk = self.ssl.read(65536)
            except ssl.SSLWantReadError:
                try:
                    if not await self.receive():
                        continue  # write_eof: the next read says how it ended
                except ConnectionResetError:
                    return bytes(data), "reset"
                continue
            except ssl.SSLEOFError:
                return bytes(data), "eof"  # TCP ended without close_notify
            except ssl.SSLZeroReturnError:
                return bytes(data), "close_notify"  # after ours
            if not chunk:
                return bytes(data), "close_notify"
            data += chunk

    def close(self) -> None:
        self.sock.close()


# -- end to end through serve() -------------------------------------------------------------


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def run_on(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    async def wrapped() -> None:
        await asyncio.wait_for(main(), 4 * PATIENCE)

    loops.run(wrapped(), loop=loop)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("loop", LOOPS)
def test_echo_small_and_large_messages(
    server_ssl: ssl.SSLContext, certificates: DevCertificates, loop: str, version: ssl.TLSVersion
) -> None:
    transports: list[asyncio.BaseTransport] = []

    async def handler(ws: ServerConnection) -> None:
        transports.append(ws.transport)
        await echo(ws)

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", 0, ssl=server_ssl, max_size=8 * MIB, ping_interval=None
        ) as server:
            uri = f"wss://127.0.0.1:{port_of(server)}/"
            async with connect(
                uri, ssl=client_context(certificates, version), max_size=8 * MIB, ping_interval=None
            ) as ws:
                assert ws.ssl_object.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
                messages: list[str | bytes] = [
                    b"x",
                    "héllo",
                    os.urandom(4 * MIB),
                    "é" * (2 * MIB),
                    os.urandom(70_000),
                ]
                for message in messages:
                    await ws.send(message)
                    assert await ws.recv() == message
        [transport] = transports
        assert isinstance(transport, TLSTransport)

    run_on(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_many_connections_at_once(
    server_ssl: ssl.SSLContext, certificates: DevCertificates, loop: str
) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
            uri = f"wss://127.0.0.1:{port_of(server)}/"
            context = client_context(certificates)

            async def one(index: int) -> str:
                async with connect(uri, ssl=context, ping_interval=None) as ws:
                    await ws.send(f"hello {index}")
                    return str(await ws.recv())

            answers = await asyncio.gather(*(one(index) for index in range(150)))
            assert answers == [f"hello {index}" for index in range(150)]
            assert len(server.connections) <= 150

    run_on(loop, main)


async def test_asyncio_tls_stays_available_by_name(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    seen: list[tuple[asyncio.BaseTransport, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append((ws.transport, ws.ssl_object))
        await echo(ws)

    options: dict[str, Any] = {"ssl": server_ssl, "tls_transport": "asyncio", "ping_interval": None}
    async with (
        serve(handler, "127.0.0.1", 0, **options) as server,
        connect(f"wss://127.0.0.1:{port_of(server)}/", ssl=client_context(certificates)) as ws,
    ):
        await ws.send("hi")
        assert await ws.recv() == "hi"
    [(transport, ssl_object)] = seen
    assert not isinstance(transport, TLSTransport)
    assert isinstance(ssl_object, ssl.SSLObject)
    with pytest.raises(ValueError, match="tls_transport"):
        serve(handler, "127.0.0.1", 0, ssl=server_ssl, tls_transport="openssl")


async def test_mutual_tls_peer_certificate(certificates: DevCertificates) -> None:
    cert, key = issue_client_certificate("bob@example.org", certificates.directory)
    server_ssl = tls.server_context(
        certificates.cert, certificates.key, client_ca=certificates.ca_cert, client_cert="required"
    )

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws.transport, TLSTransport)
        certificate = ws.peer_certificate
        await ws.send("none" if certificate is None else certificate.subject)

    async with serve(handler, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        async with connect(
            uri, ssl=tls.client_context(certificates.ca_cert, cert, key), ping_interval=None
        ) as ws:
            subject = await ws.recv()
            assert isinstance(subject, str) and subject.startswith("CN=bob@example.org")


async def test_a_peer_that_aborts_mid_message(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    outcome: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosedError:
            outcome.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
        port = port_of(server)
        client = await BioClient.connect(port, client_context(certificates))
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        await client.send(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await client.read_some()
        assert head.startswith(b"HTTP/1.1 101 ")
        # A masked binary frame announcing 1000 bytes, of which 10 come.
        await client.send(struct.pack("!BBH", 0x82, 0x80 | 126, 1000) + os.urandom(4) + os.urandom(10))
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST
        assert await asyncio.wait_for(outcome, PATIENCE) == 1006


# -- TLSProtocol with a recording application ------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_writelines_and_extra_info(
    server_ssl: ssl.SSLContext, certificates: DevCertificates, version: ssl.TLSVersion
) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates, version))
        [recorder] = recorders
        await asyncio.wait_for(recorder.made, PATIENCE)
        transport = recorder.transport
        assert transport is not None
        big = os.urandom(3 * 2**18 + 5)
        pieces: list[bytes | bytearray | memoryview] = [
            b"ab",
            bytearray(b"cd"),
            memoryview(big),
            b"",
            b"ef" * 9000,
        ]
        transport.writelines(pieces)
        transport.write(memoryview(b"tail"))
        expected = b"abcd" + big + b"ef" * 9000 + b"tail"

        sslobj = transport.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.version() == client.ssl.version()
        assert transport.get_extra_info("cipher") == client.ssl.cipher()
        assert transport.get_extra_info("compression") is None
        assert transport.get_extra_info("peercert") is None  # no client certificate
        assert transport.get_extra_info("sslcontext") is server_ssl
        assert transport.get_extra_info("peername") == client.sock.getsockname()
        assert transport.get_extra_info("sockname") == client.sock.getpeername()
        assert transport.get_extra_info("socket") is not None
        assert transport.get_extra_info("no such thing", "default") == "default"
        assert transport.can_write_eof() is False
        assert transport.is_reading()

        transport.close()
        assert transport.is_closing()
        transport.write(b"dropped after close")
        data, ending = await client.read_until_closed()
        assert data == expected
        assert ending == "close_notify"
        # Our close_notify back ends the connection cleanly.
        client.ssl.unwrap()
        await client.flush()
        assert await asyncio.wait_for(recorder.lost, PATIENCE) is None
        assert recorder.events == ["made", "lost"]
        client.close()


async def test_close_notify_from_the_peer(server_ssl: ssl.SSLContext, certificates: DevCertificates) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates))
        await client.send(b"last words")
        with suppress(ssl.SSLWantReadError):
            client.ssl.unwrap()  # sends close_notify
        await client.flush()
        [recorder] = recorders
        assert await asyncio.wait_for(recorder.lost, PATIENCE) is None
        assert bytes(recorder.received) == b"last words"
        assert recorder.events == ["made", "eof", "lost"]
        # The server answered with its own close_notify before closing TCP.
        data, ending = await client.read_until_closed()
        assert (data, ending) == (b"", "close_notify")
        client.close()


async def test_a_ragged_eof_ends_the_stream(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates))
        await client.send(b"then silence")
        client.sock.shutdown(socket.SHUT_WR)  # TCP FIN, no close_notify
        [recorder] = recorders
        assert await asyncio.wait_for(recorder.lost, PATIENCE) is None
        assert bytes(recorder.received) == b"then silence"
        assert recorder.events == ["made", "eof", "lost"]
        client.close()


async def test_a_peer_that_never_answers_close_notify_is_dropped(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    recorders: list[Recorder] = []

    def make() -> TLSProtocol:
        recorder = Recorder()
        recorders.append(recorder)
        return TLSProtocol(recorder, server_ssl, server_side=True, shutdown_timeout=0.2)

    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    async with server:
        client = await BioClient.connect(server.sockets[0].getsockname()[1], client_context(certificates))
        [recorder] = recorders
        await asyncio.wait_for(recorder.made, PATIENCE)
        assert recorder.transport is not None
        recorder.transport.close()
        # The client reads nothing and never sends its close_notify.
        assert await asyncio.wait_for(recorder.lost, PATIENCE) is None
        assert recorder.events == ["made", "lost"]
        client.close()


async def test_backpressure_follows_the_tcp_transport(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates))
        [recorder] = recorders
        await asyncio.wait_for(recorder.made, PATIENCE)
        transport = recorder.transport
        assert transport is not None
        transport.set_write_buffer_limits(high=2**16)
        assert transport.get_write_buffer_limits()[1] == 2**16
        chunk = os.urandom(2**18)
        written = 0
        # The client does not read: the kernel buffers fill, then ours.
        for _ in range(400):
            transport.write(chunk)
            written += len(chunk)
            if "pause" in recorder.events:
                break
            await asyncio.sleep(0)
        assert recorder.events == ["made", "pause"]
        assert transport.get_write_buffer_size() > 2**16
        # The slow reader catches up: writing resumes, nothing is lost.
        received = 0
        while received < written:
            await client.receive()
            with suppress(ssl.SSLWantReadError):
                while True:
                    received += len(client.ssl.read(2**20))
        assert received == written
        assert recorder.events == ["made", "pause", "resume"]
        client.close()


async def test_pause_reading_holds_data_until_resumed(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates))
        [recorder] = recorders
        await asyncio.wait_for(recorder.made, PATIENCE)
        transport = recorder.transport
        assert transport is not None
        arrived = asyncio.Event()
        recorder.on_data = lambda r: arrived.set()
        await client.send(b"first")
        await asyncio.wait_for(arrived.wait(), PATIENCE)
        transport.pause_reading()
        assert not transport.is_reading()
        await client.send(b"second")
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert bytes(recorder.received) == b"first"
        transport.resume_reading()
        assert transport.is_reading()
        while bytes(recorder.received) != b"firstsecond":
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), PATIENCE)
        client.close()


# -- failed handshakes -----------------------------------------------------------------------


async def test_handshake_timeout(server_ssl: ssl.SSLContext) -> None:
    async with tls_server(server_ssl, handshake_timeout=0.3) as (port, recorders):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01")  # the start of a record, then nothing
        # The server drops the connection; no application protocol ever heard of it.
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        assert [recorder.events for recorder in recorders] == [[]]
        writer.close()


async def test_serve_bounds_the_handshake_with_open_timeout(server_ssl: ssl.SSLContext) -> None:
    async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, open_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        assert not server.connections
        writer.close()


def _blocking_handshake(port: int, context: ssl.SSLContext) -> str:
    # A plain Python ssl client: the error it raises, as text.
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"hello")
                sock.recv(100)  # TLS 1.3 reports a refused client certificate here
        except ssl.SSLError as exc:
            return str(exc)
        except OSError as exc:
            return f"OSError: {exc}"
    return "no error"


async def test_a_failed_handshake_sends_its_alert(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    context = client_context(certificates, ssl.TLSVersion.TLSv1_2)
    # A cipher the Mozilla intermediate profile does not allow.
    context.set_ciphers("AES128-SHA")
    async with tls_server(server_ssl) as (port, recorders):
        error = await asyncio.to_thread(_blocking_handshake, port, context)
        assert "ALERT_HANDSHAKE_FAILURE" in error.upper() or "HANDSHAKE FAILURE" in error.upper(), error
        assert [recorder.events for recorder in recorders] == [[]]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_missing_client_certificate_gets_certificate_required(
    certificates: DevCertificates, loop: str
) -> None:
    server_ssl = tls.server_context(
        certificates.cert, certificates.key, client_ca=certificates.ca_cert, client_cert="required"
    )

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
            error = await asyncio.to_thread(
                _blocking_handshake, port_of(server), client_context(certificates)
            )
            assert "CERTIFICATE_REQUIRED" in error.upper() or "CERTIFICATE REQUIRED" in error.upper(), error
            assert not server.connections

    run_on(loop, main)


async def test_bytes_that_are_no_tls_end_the_connection(server_ssl: ssl.SSLContext) -> None:
    async with tls_server(server_ssl) as (port, recorders):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # OpenSSL sends no alert to what is no TLS record at all: the
        # connection just ends, at once (the handshake timeout is 30 s here).
        assert await asyncio.wait_for(reader.read(), PATIENCE / 3) == b""
        assert [recorder.events for recorder in recorders] == [[]]
        writer.close()


def test_a_client_context_is_refused(certificates: DevCertificates) -> None:
    with pytest.raises(ValueError, match="server context"):
        tls_server_factory(Recorder, client_context(certificates))


async def test_connection_made_only_after_the_handshake(server_ssl: ssl.SSLContext) -> None:
    seen: list[Any] = []

    async with tls_server(server_ssl) as (port, recorders):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        seen.extend(recorder.events for recorder in recorders)
        writer.close()
    assert seen == [[]]


# -- the read and write paths, record by record -----------------------------------------------


class CountingTLS(TLSProtocol):
    """TLSProtocol that also notes the size of every TCP read it gets."""

    def __init__(self, app: asyncio.Protocol, context: ssl.SSLContext) -> None:
        super().__init__(app, context, server_side=True, handshake_timeout=PATIENCE)
        self.reads: list[int] = []

    def data_received(self, data: bytes) -> None:
        self.reads.append(len(data))
        super().data_received(data)


class CountingRecorder(Recorder):
    """A Recorder that also counts its data_received calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def data_received(self, data: bytes) -> None:
        self.calls += 1
        super().data_received(data)


@asynccontextmanager
async def counting_server(
    context: ssl.SSLContext,
) -> AsyncIterator[tuple[int, list[tuple[CountingTLS, CountingRecorder]]]]:
    """A TCP server running CountingTLS over a CountingRecorder per connection."""
    made: list[tuple[CountingTLS, CountingRecorder]] = []

    def make() -> CountingTLS:
        recorder = CountingRecorder()
        protocol = CountingTLS(recorder, context)
        made.append((protocol, recorder))
        return protocol

    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], made
    finally:
        server.close()
        for _, recorder in made:
            if recorder.transport is not None:
                recorder.transport.abort()
        await server.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (on the loop the server runs on) until ``condition()`` holds."""
    for _ in range(int(PATIENCE / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def records(client: BioClient, plaintexts: list[bytes]) -> bytes:
    """The ciphertext of one TLS record (at least) per plaintext, not yet sent."""
    for plaintext in plaintexts:
        client.ssl.write(plaintext)
    return client.outgoing.read()


PYTHON_LEVEL = [pytest.param(False, id="c-level"), pytest.param(True, id="python-level")]


@pytest.mark.parametrize("python_level", PYTHON_LEVEL)
@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_many_records_in_one_read_are_delivered_at_once(
    server_ssl: ssl.SSLContext,
    certificates: DevCertificates,
    version: ssl.TLSVersion,
    python_level: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if python_level:
        # Where ssl.SSLObject has no C object to reach, the SSLObject does the work.
        monkeypatch.setattr("wsskit.asyncio.tls_transport._c_level", lambda sslobj: sslobj)
    async with counting_server(server_ssl) as (port, made):
        client = await BioClient.connect(port, client_context(certificates, version))
        await until(lambda: bool(made) and made[0][1].transport is not None)
        [(protocol, recorder)] = made
        # Small records, full ones (16 KiB of plaintext: the read size cap)
        # and one in between, all in one send.
        plaintexts = [bytes([i]) * (i + 1) for i in range(40)]
        plaintexts += [os.urandom(2**14), b"mid" * 3000, os.urandom(2**14), b"end"]
        expected = b"".join(plaintexts)
        wire = records(client, plaintexts)
        before = len(protocol.reads)
        await client.loop.sock_sendall(client.sock, wire)
        await until(lambda: len(recorder.received) >= len(expected))
        assert bytes(recorder.received) == expected
        tcp_reads = len(protocol.reads) - before
        # One delivery per TCP read at most, however many records each held.
        assert 1 <= recorder.calls <= tcp_reads
        # Writes take the same path back.
        transport = recorder.transport
        assert transport is not None
        transport.write(b"back")
        assert await client.read_some() == b"back"
        client.close()


@pytest.mark.parametrize("python_level", PYTHON_LEVEL)
@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_record_split_across_reads(
    server_ssl: ssl.SSLContext,
    certificates: DevCertificates,
    version: ssl.TLSVersion,
    python_level: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if python_level:
        monkeypatch.setattr("wsskit.asyncio.tls_transport._c_level", lambda sslobj: sslobj)
    async with counting_server(server_ssl) as (port, made):
        client = await BioClient.connect(port, client_context(certificates, version))
        await until(lambda: bool(made) and made[0][1].transport is not None)
        [(protocol, recorder)] = made
        full = os.urandom(2**14)
        # The last part of a full record is shorter than its plaintext: the
        # read that completes the record leaves plaintext inside OpenSSL,
        # which must come out too. Then a small record cut in three, the
        # cuts inside the header, then inside the payload.
        cases = [
            (full, [10_000]),
            (b"small record", [3, 9]),
            (os.urandom(5000), [1, 2500]),
        ]
        expected = b""
        for plaintext, cuts in cases:
            wire = records(client, [plaintext])
            expected += plaintext
            start = 0
            for end in [*cuts, len(wire)]:
                sent = sum(protocol.reads)
                await client.loop.sock_sendall(client.sock, wire[start:end])
                # The server takes this part in before the next is sent.
                await until(lambda sent=sent, part=end - start: sum(protocol.reads) == sent + part)
                start = end
            await until(lambda expected=expected: len(recorder.received) >= len(expected))
            assert bytes(recorder.received) == expected
        # Nothing came before its record was whole: one delivery per plaintext.
        assert recorder.calls == len(cases)
        client.close()


async def test_writes_of_every_kind_and_size(
    server_ssl: ssl.SSLContext, certificates: DevCertificates
) -> None:
    from wsskit.asyncio.tls_transport import _WRITE_SLICE

    async with tls_server(server_ssl) as (port, recorders):
        client = await BioClient.connect(port, client_context(certificates))
        [recorder] = recorders
        await asyncio.wait_for(recorder.made, PATIENCE)
        transport = recorder.transport
        assert transport is not None
        pieces: list[bytes | bytearray | memoryview] = [
            b"",  # nothing at all goes out for it
            b"x",
            bytearray(b"from a bytearray"),
            memoryview(b"from a memoryview"),
            os.urandom(_WRITE_SLICE),  # the largest write taken in one go
            os.urandom(_WRITE_SLICE + 1),  # sliced
            bytearray(os.urandom(2**14 + 1)),
        ]
        for piece in pieces:
            transport.write(piece)
        expected = b"".join(bytes(piece) for piece in pieces)
        transport.close()
        data, ending = await client.read_until_closed()
        assert data == expected
        assert ending == "close_notify"
        client.close()
