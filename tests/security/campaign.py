"""Shared helpers of the bad-input campaign (``test_campaign_*.py``).

- :func:`start_campaign_server` runs ``campaign_server.py`` as a subprocess and
  returns a :class:`CampaignServer`: its ports and secrets, its log (read
  line by line in a thread, see :class:`ServerLog`) and its memory
  (``VmRSS``/``VmHWM`` from ``/proc/<pid>/status``; the peak is reset
  through ``/proc/<pid>/clear_refs`` before each attack).
- :class:`Peer` is a raw client over real TLS (asyncio streams): it writes
  whatever bytes it is told to and reads HTTP heads and WebSocket frames by
  hand. :func:`frame` builds frames the way the case says, malformed ones
  included; :func:`client_frame` builds well-formed masked frames with
  :func:`wsskit.protocol.frames.encode_frame`.
- :func:`guarded` wraps one attack: it opens a healthy neighbour (a wsskit
  client on ``/echo``) first, and afterwards checks that the neighbour
  still echoes, that the server's peak memory stayed under the case's bound
  and that its log holds no ERROR and no traceback from the attack.
- :func:`tls_record`, :func:`client_hello` and :func:`read_tls_outcome`
  hand-craft TLS records below OpenSSL, which refuses to build old or broken
  ClientHellos; :class:`BioTls` runs a real TLS client through memory BIOs,
  so that raw bytes can follow a completed handshake.

Set ``CAMPAIGN_MEMORY_LOG=<file>`` to append each case's peak growth and
bound to a file (how the bounds were calibrated).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsskit import tls
from wsskit.asyncio import ClientConnection, connect
from wsskit.protocol.frames import encode_frame
from wsskit.protocol.handshake import accept_key, make_key

ROOT = Path(__file__).resolve().parents[2]

#: Upper bound on any single wait of the campaign: a hang fails, it never blocks the suite.
TIMEOUT = 5.0

#: One MiB in the kB units of /proc/<pid>/status.
MIB = 1024


# -- the server process ---------------------------------------------------------------


class ServerLog:
    """The server's stderr, line by line, read by a daemon thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def mark(self) -> int:
        """The position of the next line: pass it to :meth:`since`."""
        with self._cond:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        """The lines logged from ``mark`` on."""
        with self._cond:
            return self.lines[mark:]

    def wait_for(self, pattern: str, *, since: int = 0, timeout: float = TIMEOUT, count: int = 1) -> str:
        """Block until ``count`` lines from ``since`` on match the regex ``pattern``; return the last.

        Raises :class:`AssertionError` when fewer do within ``timeout``, or the log ends first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = since
        found = 0
        with self._cond:
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if regex.search(line):
                        found += 1
                        if found == count:
                            return line
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(
                        f"{found} of {count} server log lines matching {pattern!r} within {timeout} s"
                    )
                self._cond.wait(left)

    async def wait_for_async(
        self, pattern: str, *, since: int = 0, timeout: float = TIMEOUT, count: int = 1
    ) -> str:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, since=since, timeout=timeout, count=count)


@dataclass(frozen=True)
class Memory:
    """``VmRSS`` and ``VmHWM`` of a process, in KiB."""

    rss: int
    hwm: int


def problems(lines: Iterable[str]) -> list[str]:
    """The log lines that must never follow a hostile input: ERROR, CRITICAL, tracebacks."""
    return [
        line
        for line in lines
        if line.startswith(("ERROR", "CRITICAL")) or "Traceback (most recent call last)" in line
    ]


class CampaignServer:
    """A running ``campaign_server.py``: its process, ports, secrets, log and memory."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log: ServerLog) -> None:
        self.process = process
        self.info = info
        self.log = log
        self.pid = process.pid
        self.ports: dict[str, int] = info["ports"]
        self.ca = info["ca"]
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    @property
    def port(self) -> int:
        """The main listener's port."""
        return self.ports["main"]

    def memory(self) -> Memory:
        """Read ``VmRSS`` and ``VmHWM`` from ``/proc/<pid>/status``."""
        values: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    number, unit = rest.split()
                    assert unit == "kB", line
                    values[name] = int(number)
        return Memory(values["VmRSS"], values["VmHWM"])

    def reset_peak(self) -> None:
        """Reset ``VmHWM`` to the current ``VmRSS`` (Linux: ``echo 5 > clear_refs``)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def context(self, client_cert: str | None = None) -> ssl.SSLContext:
        """A verifying client context trusting the campaign CA; ``client_cert`` names a certificate."""
        if client_cert not in self._contexts:
            if client_cert is None:
                context = tls.client_context(cafile=self.ca)
            else:
                cert, key = self.info["client_certs"][client_cert]
                context = tls.client_context(cafile=self.ca, certfile=cert, keyfile=key)
            self._contexts[client_cert] = context
        return self._contexts[client_cert]

    async def barrier(self) -> None:
        """Return once every line the server logged before this call has been read.

        ``/mark?id=...`` logs the id before it answers; the log is one ordered
        pipe, so seeing that line means seeing all before it.
        """
        mark = self.log.mark()
        ident = secrets.token_hex(8)
        async with open_peer(self.port, self.context()) as peer:
            await peer.send(http_request(self.port, f"/mark?id={ident}", upgrade=False))
            response = await peer.read_response()
            assert response.status == 204, response
        await self.log.wait_for_async(rf"campaign mark {ident}$", since=mark)

    async def stats(self) -> dict[str, int]:
        """The number of open WebSocket connections of each listener (``/stats``)."""
        async with open_peer(self.port, self.context()) as peer:
            await peer.send(http_request(self.port, "/stats", upgrade=False))
            response = await peer.read_response()
        assert response.status == 200, response
        result: dict[str, int] = json.loads(response.body)
        return result

    def stop(self) -> int:
        """SIGTERM the server and return its exit status (it is killed after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_campaign_server() -> CampaignServer:
    """Start ``campaign_server.py`` and wait for its JSON line (30 s at most)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # asyncio's debug mode logs every failed TLS handshake with its traceback,
    # which the campaign counts as a failure; the server runs without it.
    env.pop("PYTHONASYNCIODEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.security.campaign_server"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    log = ServerLog(process.stderr)
    lines: list[bytes] = []
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not lines or not lines[0]:
        process.kill()
        process.wait()
        raise AssertionError("campaign server did not start:\n" + "\n".join(log.lines))
    return CampaignServer(process, json.loads(lines[0]), log)


# -- HTTP ------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    """A response head (and its Content-Length body) as read off the wire."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    head: bytes = b""

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times"
        return values[0] if values else None


def default_headers(port: int) -> list[tuple[str, str]]:
    """The header fields of a valid upgrade request, in order."""
    return [
        ("Host", f"127.0.0.1:{port}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", make_key()),
        ("Sec-WebSocket-Version", "13"),
    ]


def http_request(
    port: int,
    target: str = "/echo",
    *,
    method: str = "GET",
    version: str = "HTTP/1.1",
    upgrade: bool = True,
    drop: Sequence[str] = (),
    replace: dict[str, str] | None = None,
    add: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An HTTP/1.1 request head: an upgrade (or a plain GET) changed as asked.

    ``drop`` removes fields by name, ``replace`` changes values of fields
    already there, ``add`` appends fields. Values go out as latin-1, unchecked.
    """
    headers = default_headers(port) if upgrade else [("Host", f"127.0.0.1:{port}")]
    lowered = {name.lower() for name in drop}
    headers = [(name, value) for name, value in headers if name.lower() not in lowered]
    if replace:
        changes = {name.lower(): value for name, value in replace.items()}
        headers = [(name, changes.get(name.lower(), value)) for name, value in headers]
    headers.extend(add)
    lines = [f"{method} {target} {version}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes) -> HttpResponse:
    """Parse a response head (status line and fields, ending in a blank line)."""
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    version, status, reason = [*status_line.split(" ", 2), ""][:3]
    assert version == "HTTP/1.1", status_line
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, line
        headers.append((name, value.strip(" \t")))
    return HttpResponse(int(status), reason, headers, head=head)


# -- WebSocket frames -----------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A frame the server sent."""

    fin: bool
    rsv: int  # the three RSV bits, RSV1 as 4
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == 0x8
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> bytes:
        assert self.opcode == 0x8
        return self.payload[2:]


def _mask(payload: bytes, key: bytes) -> bytes:
    # The campaign's own masking, independent of wsskit.protocol.mask.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool = True,
    length: int | None = None,
    length_form: int | None = None,
) -> bytes:
    """A frame built by hand: any bits, any opcode, any length field.

    ``length`` is the announced payload length (the real one by default);
    ``length_form`` is 7, 16 or 64: how the length is written (the shortest by
    default; a longer one makes a non-minimal encoding).
    """
    announced = len(payload) if length is None else length
    form = length_form or (7 if announced < 126 else 16 if announced < 0x10000 else 64)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0)
    first |= opcode
    mask_bit = 0x80 if mask else 0
    if form == 7:
        header = bytes((first, mask_bit | announced))
    elif form == 16:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", announced)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", announced)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + _mask(payload, key)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A well-formed masked client frame, encoded by wsskit."""
    return b"".join(bytes(part) for part in encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=True))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


# -- the raw peer ----------------------------------------------------------------------


class Peer:
    """A raw client on a TLS (or plain TCP) stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response: HttpResponse | None = None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def read_response(self, timeout: float = TIMEOUT) -> HttpResponse:
        """Read a response head and the body its Content-Length announces."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        response = parse_head(head)
        length = response.get("Content-Length")
        if length is not None:
            response.body = await asyncio.wait_for(self.reader.readexactly(int(length)), timeout)
        return response

    async def read_frame(self, timeout: float = TIMEOUT) -> Frame:
        """Read one frame the server sent; it must not be masked."""

        async def read() -> Frame:
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80, "the server masked a frame"
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, payload)

        return await asyncio.wait_for(read(), timeout)

    async def expect_close(
        self, code: int | None, *, reason: bytes | None = None, timeout: float = TIMEOUT, before: int = 0
    ) -> Frame:
        """Assert that the server's next frame is a Close with ``code`` (None: no payload), then the end.

        Nothing may follow the Close: the server ends the connection within
        ``timeout``.

        ``before`` frames of any other kind may come first (echoes of the
        messages sent before the violation); they are returned in
        :attr:`frames_before_close`. The Close is answered, as a client does.
        """
        self.frames_before_close: list[Frame] = []
        while True:
            received = await self.read_frame(timeout)
            if received.opcode == 0x8:
                break
            self.frames_before_close.append(received)
            assert len(self.frames_before_close) <= before, f"expected a Close, got {received}"
        assert received.close_code == code, f"close code {received.close_code}, expected {code}: {received}"
        if reason is not None:
            assert received.close_reason == reason, received
        with suppress(ConnectionError, ssl.SSLError):
            self.writer.write(frame(0x8, received.payload[:2]))
        after = await self.expect_eof(timeout)
        assert after == b"", f"the server sent {len(after)} bytes after its Close"
        return received

    async def expect_eof(self, timeout: float = TIMEOUT) -> bytes:
        """Assert that the server ends the connection (EOF, reset or TLS alert) within ``timeout``.

        Returns whatever bytes came before the end.
        """
        data = bytearray()

        async def drain() -> None:
            try:
                while chunk := await self.reader.read(65536):
                    data.extend(chunk)
            except (ConnectionError, ssl.SSLError):
                pass  # a reset or an alert ends it too

        await asyncio.wait_for(drain(), timeout)
        return bytes(data)

    def abort(self) -> None:
        self.writer.transport.abort()


@asynccontextmanager
async def open_peer(
    port: int,
    context: ssl.SSLContext | None,
    *,
    source: str | None = None,
    rcvbuf: int | None = None,
) -> AsyncIterator[Peer]:
    """A :class:`Peer` connected to 127.0.0.1:``port``, over TLS unless ``context`` is None.

    ``source`` binds a loopback address of its own (127.0.0.x) so that rate
    limits count it apart; ``rcvbuf`` shrinks the receive buffer.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            sock=sock,
            ssl=context,
            server_hostname="127.0.0.1" if context is not None else None,
            limit=2**21,
        ),
        TIMEOUT,
    )
    try:
        yield Peer(reader, writer)
    finally:
        writer.transport.abort()


@asynccontextmanager
async def open_ws(
    server: CampaignServer,
    target: str = "/echo",
    *,
    port: int | None = None,
    add: Sequence[tuple[str, str]] = (),
    source: str | None = None,
    client_cert: str | None = None,
    rcvbuf: int | None = None,
) -> AsyncIterator[Peer]:
    """A raw :class:`Peer` after a successful upgrade (101 checked) to ``target``."""
    port = server.port if port is None else port
    async with open_peer(port, server.context(client_cert), source=source, rcvbuf=rcvbuf) as peer:
        request = http_request(port, target, add=add)
        await peer.send(request)
        response = await peer.read_response()
        assert response.status == 101, response
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", request)
        assert key is not None
        assert response.get("Sec-WebSocket-Accept") == accept_key(key.group(1).decode())
        peer.response = response
        yield peer


# -- one guarded attack -----------------------------------------------------------------


class Neighbour:
    """A healthy wsskit client on ``/echo``, opened before an attack."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: CampaignServer, port: int | None = None) -> Neighbour:
        port = server.port if port is None else port
        ws = await connect(
            f"wss://127.0.0.1:{port}/echo",
            ssl=server.context(),
            ping_interval=None,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
        )
        return cls(ws)

    async def check(self) -> None:
        """Assert that the neighbour's connection still echoes a message."""
        message = f"still here {secrets.token_hex(8)}"
        await asyncio.wait_for(self.ws.send(message), TIMEOUT)
        assert await asyncio.wait_for(self.ws.recv(), TIMEOUT) == message

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), TIMEOUT)


class RawNeighbour:
    """A well-behaved raw client on ``/echo`` from a loopback address of its own.

    wsskit's client cannot bind a source address; the rate-limited listener
    counts connections per address, so its neighbours each need their own.
    """

    def __init__(self, stack: AsyncExitStack, peer: Peer) -> None:
        self._stack = stack
        self.peer = peer

    @classmethod
    async def open(cls, server: CampaignServer, port: int, source: str) -> RawNeighbour:
        stack = AsyncExitStack()
        peer = await stack.enter_async_context(open_ws(server, port=port, source=source))
        return cls(stack, peer)

    async def check(self) -> None:
        message = f"still here {secrets.token_hex(8)}".encode()
        await self.peer.send(client_frame(0x1, message))
        echoed = await self.peer.read_frame()
        assert (echoed.opcode, echoed.payload) == (0x1, message)

    async def close(self) -> None:
        await self.peer.send(client_frame(0x8, close_payload(1000)))
        await self.peer.expect_close(1000)
        await self._stack.aclose()


_addresses = itertools.count(2)


def fresh_address() -> str:
    """A loopback address (127.x.y.1) that no other connection of the session used."""
    number = next(_addresses)
    assert number < 254 * 254
    return f"127.{1 + number // 254}.{number % 254 + 1}.1"


@dataclass
class Guard:
    """What :func:`guarded` hands the attack: the server and the log position it started at."""

    server: CampaignServer
    mark: int
    baseline: Memory
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self) -> list[str]:
        """The server's log lines since the attack began (complete after :meth:`CampaignServer.barrier`)."""
        return self.server.log.since(self.mark)


@asynccontextmanager
async def guarded(
    server: CampaignServer, *, memory_kib: int, neighbour_port: int | None = None
) -> AsyncIterator[Guard]:
    """Run one attack between the campaign's checks.

    Before: a neighbour connects to ``/echo`` (on ``neighbour_port``, the
    main listener by default; the rate-limited listener gets a raw neighbour
    from an address of its own), and the server's peak memory is reset.
    After: the neighbour still echoes; the peak (``VmHWM``) rose by at most
    ``memory_kib`` above the resident size at the start; and, once a log
    barrier has passed, the log since the start holds no ERROR, CRITICAL or
    traceback.
    """
    neighbour: Neighbour | RawNeighbour
    if neighbour_port is not None and neighbour_port == server.ports["limited"]:
        neighbour = await RawNeighbour.open(server, neighbour_port, fresh_address())
    else:
        neighbour = await Neighbour.open(server, neighbour_port)
    try:
        server.reset_peak()
        guard = Guard(server, server.log.mark(), server.memory())
        yield guard
        await neighbour.check()
        peak = server.memory().hwm
        growth = peak - guard.baseline.rss
        if os.environ.get("CAMPAIGN_MEMORY_LOG"):
            with open(os.environ["CAMPAIGN_MEMORY_LOG"], "a") as out:
                out.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')} {growth} {memory_kib}\n")
        assert growth <= memory_kib, (
            f"server peak memory rose by {growth} KiB during the attack; the bound is {memory_kib} KiB"
        )
        await server.barrier()
        assert problems(guard.log()) == [], "\n".join(guard.log())
    except BaseException:
        with suppress(Exception):
            await neighbour.close()
        raise
    await neighbour.close()


# -- TLS records -------------------------------------------------------------------------

# Cipher suite numbers (IANA).
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = 0xC02B
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 = 0xC02F
TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA = 0xC009
TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384 = 0xC024
TLS_RSA_WITH_AES_128_CBC_SHA = 0x002F
TLS_RSA_WITH_AES_128_GCM_SHA256 = 0x009C
TLS_RSA_WITH_RC4_128_SHA = 0x0005
TLS_RSA_WITH_3DES_EDE_CBC_SHA = 0x000A
TLS_RSA_WITH_NULL_SHA256 = 0x003B
TLS_ECDHE_ECDSA_WITH_NULL_SHA = 0xC006
TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF

# Alert descriptions (RFC 8446 §6).
ALERT_UNEXPECTED_MESSAGE = 10
ALERT_BAD_RECORD_MAC = 20
ALERT_RECORD_OVERFLOW = 22
ALERT_HANDSHAKE_FAILURE = 40
ALERT_ILLEGAL_PARAMETER = 47
ALERT_DECODE_ERROR = 50
ALERT_PROTOCOL_VERSION = 70


def tls_record(content_type: int, body: bytes, *, version: int = 0x0301, length: int | None = None) -> bytes:
    """One TLS record; ``length`` overrides the length field."""
    return struct.pack("!BHH", content_type, version, len(body) if length is None else length) + body


def tls_vector(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def tls_extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + tls_vector(body, 2)


def modern_extensions(host: str = "localhost") -> list[bytes]:
    """The extensions a TLS 1.2 ECDHE-ECDSA client sends: SNI, groups, point formats, signatures."""
    name = host.encode()
    return [
        tls_extension(0, tls_vector(b"\x00" + tls_vector(name, 2), 2)),  # server_name
        tls_extension(
            10, tls_vector(struct.pack("!HH", 0x001D, 0x0017), 2)
        ),  # supported_groups: x25519, P-256
        tls_extension(11, tls_vector(b"\x00", 1)),  # ec_point_formats: uncompressed
        tls_extension(13, tls_vector(struct.pack("!HHH", 0x0403, 0x0804, 0x0401), 2)),  # signature_algorithms
        tls_extension(0xFF01, b"\x00"),  # renegotiation_info (empty)
    ]


def client_hello(
    *,
    version: int = 0x0303,
    record_version: int = 0x0301,
    suites: Sequence[int] = (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    compression: bytes = b"\x00",
    extensions: Sequence[bytes] | None = None,
    suites_bytes: bytes | None = None,
) -> bytes:
    """A ClientHello record built by hand (RFC 5246 §7.4.1.2)."""
    body = struct.pack("!H", version) + os.urandom(32) + tls_vector(b"", 1)
    body += (
        tls_vector(b"".join(struct.pack("!H", suite) for suite in suites), 2)
        if suites_bytes is None
        else suites_bytes
    )
    body += tls_vector(compression, 1)
    if extensions is not None:
        body += tls_vector(b"".join(extensions), 2)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return tls_record(0x16, handshake, version=record_version)


def sslv2_client_hello(version: int, specs: Sequence[int]) -> bytes:
    """An SSL 2.0-format ClientHello (RFC 6101 appendix E.2), offering ``version``."""
    cipher_specs = b"".join(spec.to_bytes(3, "big") for spec in specs)
    challenge = os.urandom(16)
    body = b"\x01" + struct.pack("!HHHH", version, len(cipher_specs), 0, len(challenge))
    body += cipher_specs + challenge
    return struct.pack("!H", 0x8000 | len(body)) + body


@dataclass(frozen=True)
class TlsOutcome:
    """How the server answered raw TLS bytes: the first record's type and, for an alert, its description."""

    record_type: int | None  # None: the connection ended without a record
    alert: int | None = None
    handshake_type: int | None = None
    elapsed: float = 0.0


async def read_tls_outcome(reader: asyncio.StreamReader, *, timeout: float = TIMEOUT) -> TlsOutcome:
    """Read the server's first TLS record (or the end of the connection) within ``timeout``."""
    started = time.monotonic()

    async def read() -> TlsOutcome:
        try:
            header = await reader.readexactly(5)
        except (asyncio.IncompleteReadError, ConnectionError):
            return TlsOutcome(None, elapsed=time.monotonic() - started)
        content_type, _, length = struct.unpack("!BHH", header)
        body = await reader.readexactly(min(length, 4))
        if content_type == 0x15:
            return TlsOutcome(content_type, alert=body[1], elapsed=time.monotonic() - started)
        if content_type == 0x16:
            return TlsOutcome(content_type, handshake_type=body[0], elapsed=time.monotonic() - started)
        return TlsOutcome(content_type, elapsed=time.monotonic() - started)

    return await asyncio.wait_for(read(), timeout)


async def read_until_closed(reader: asyncio.StreamReader, *, timeout: float = TIMEOUT) -> bytes:
    """Read everything until the server closes the connection, within ``timeout``."""
    data = bytearray()

    async def read() -> None:
        with suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data.extend(chunk)

    await asyncio.wait_for(read(), timeout)
    return bytes(data)


class BioTls:
    """A TLS client driven through memory BIOs over a plain TCP stream.

    Unlike an asyncio TLS stream it can put raw bytes on the wire at any
    point: garbage records after the handshake, a tampered record, a bare
    close_notify.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    async def _feed(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        if not data:
            self.incoming.write_eof()
        self.incoming.write(data)

    def pending_output(self) -> bytes:
        """What the TLS object wants to send, taken out of its BIO (not sent)."""
        return self.outgoing.read()

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self.flush()
                await self._feed()
            else:
                await self.flush()
                return

    async def send(self, plaintext: bytes) -> None:
        self.tls.write(plaintext)
        await self.flush()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def read_head(self) -> bytes:
        """Read decrypted bytes up to the end of an HTTP head."""
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            try:
                buffer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                await self._feed()
        return buffer


@asynccontextmanager
async def open_bio_tls(port: int, context: ssl.SSLContext) -> AsyncIterator[BioTls]:
    """A :class:`BioTls` connected to 127.0.0.1:``port`` (handshake not done yet)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        yield BioTls(reader, writer, context)
    finally:
        writer.transport.abort()
