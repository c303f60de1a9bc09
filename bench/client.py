"""The one benchmark client: sequential echo round trips on one connection.

    python bench/client.py --url ws://127.0.0.1:PORT/ --server-pid PID --size 1024 --round-trips 5000

It connects, checks that a first message comes back unchanged, warms up
with a few large messages and some of the size under test, then sends
``--round-trips`` binary messages one after the other, each only once the
previous echo is complete. Around that timed loop it reads the wall clock,
its own CPU time and the server process's CPU time, and prints one JSON
object on stdout.

Two drivers, the same for every server in a run:

- ``picows`` (default when installed): picows's Cython client on uvloop
  (or asyncio), driven from its frame callback with no coroutine per message;
- ``raw``: a blocking socket (TLS-wrapped for wss) that sends one pre-built,
  pre-masked frame and parses the echo itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WARMUP_LARGE_SIZE = 2**20  # 1 MiB, under every server's 2 MiB limit
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU time of a process ----------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """CPU time (user + system) a process has used so far, in nanoseconds.

    Summed over its threads from ``/proc/PID/task/*/schedstat`` (nanosecond
    resolution); where schedstat is missing, ``utime + stime`` from
    ``/proc/PID/stat`` (clock-tick resolution, usually 10 ms).
    """
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0])
            except FileNotFoundError:  # the thread ended meanwhile
                continue
    except OSError:
        return cpu_ticks_ns(pid)
    return total if total else cpu_ticks_ns(pid)


def cpu_ticks_ns(pid: int) -> int:
    """``utime + stime`` of a process from ``/proc/PID/stat``, in nanoseconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks * 1_000_000_000 // _CLOCK_TICKS


@dataclass
class Sample:
    """One timed loop: what the client prints."""

    driver: str
    size: int
    round_trips: int
    wall_s: float
    server_cpu_ns: int
    server_ticks_ns: int
    client_cpu_ns: int
    tls: str | None = None

    @property
    def round_trips_per_s(self) -> float:
        return self.round_trips / self.wall_s

    @property
    def server_us_per_round_trip(self) -> float:
        return self.server_cpu_ns / 1000 / self.round_trips


class _Meter:
    """Readings of the clock and both processes' CPU, taken before and after."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.wall = time.perf_counter()
        self.server = cpu_ns(server_pid)
        self.ticks = cpu_ticks_ns(server_pid)
        self.client = time.process_time_ns()

    def sample(self, driver: str, size: int, round_trips: int, tls: str | None) -> Sample:
        wall = time.perf_counter()
        server = cpu_ns(self.server_pid)
        ticks = cpu_ticks_ns(self.server_pid)
        client = time.process_time_ns()
        return Sample(
            driver=driver,
            size=size,
            round_trips=round_trips,
            wall_s=wall - self.wall,
            server_cpu_ns=server - self.server,
            server_ticks_ns=ticks - self.ticks,
            client_cpu_ns=client - self.client,
            tls=tls,
        )


# -- picows driver -------------------------------------------------------------------


async def _run_picows(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Driver(WSListener):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            self.payload = b""
            self.remaining = 0
            self.received = 0
            self.keep: bytearray | None = None
            self.done: asyncio.Future[bytes] | None = None

        def run(self, transport: WSTransport, payload: bytes, count: int, keep: bool = False) -> None:
            self.payload = payload
            self.remaining = count
            self.received = 0
            self.keep = bytearray() if keep else None
            self.done = asyncio.get_running_loop().create_future()
            transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
                self.received += frame.payload_size
                if self.keep is not None:
                    self.keep += frame.get_payload_as_memoryview()
                if not frame.fin:
                    return
                if self.received != len(self.payload):
                    self._fail(f"echo of {self.received} bytes for a {len(self.payload)}-byte message")
                    return
                self.received = 0
                self.remaining -= 1
                if self.remaining:
                    transport.send(WSMsgType.BINARY, self.payload)
                elif self.done is not None and not self.done.done():
                    self.done.set_result(bytes(self.keep or b""))
            elif kind is WSMsgType.CLOSE:
                self._fail(f"server closed: {frame.get_close_code()} {frame.get_close_reason()}")
            elif kind is not WSMsgType.PONG:
                self._fail(f"unexpected {kind} frame")

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self._fail("disconnected")

        def _fail(self, why: str) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_exception(ConnectionError(why))

    transport, listener = await ws_connect(
        Driver, args.url, ssl_context=context, max_frame_size=2 * WARMUP_LARGE_SIZE
    )
    assert isinstance(listener, Driver)
    driver: Driver = listener

    async def batch(payload: bytes, count: int, keep: bool = False) -> bytes:
        if count <= 0:
            return b""
        driver.run(transport, payload, count, keep)
        assert driver.done is not None
        return await driver.done

    tls = _tls_description(transport.underlying_transport.get_extra_info("ssl_object"))
    payload = os.urandom(args.size)
    if await batch(payload, 1, keep=True) != payload:
        raise AssertionError("the server's echo differs from the message sent")
    await batch(os.urandom(WARMUP_LARGE_SIZE), args.warmup_large)
    await batch(payload, args.warmup)
    meter = _Meter(args.server_pid)
    await batch(payload, args.round_trips)
    sample = meter.sample("picows", args.size, args.round_trips, tls)
    transport.send_close(WSCloseCode.OK)
    transport.disconnect()
    await transport.wait_disconnected()
    return sample


# -- raw socket driver ---------------------------------------------------------------


class RawClient:
    """A blocking WebSocket client that knows just enough RFC 6455 for echoes."""

    def __init__(self, url: str, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "wss":
            if context is None:
                raise ValueError("wss needs a TLS context")
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buffer = bytearray(4 * WARMUP_LARGE_SIZE)
        self.view = memoryview(self.buffer)
        self.start = 0
        self.end = 0
        self._handshake(f"{host}:{port}", parts.path or "/")

    def tls(self) -> str | None:
        return _tls_description(self.sock) if isinstance(self.sock, ssl.SSLSocket) else None

    def _handshake(self, authority: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while (head_end := self.buffer.find(b"\r\n\r\n", 0, self.end)) < 0:
            self._fill()
        status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
        if status.split()[1:2] != [b"101"]:
            raise ConnectionError(f"handshake failed: {status!r}")
        self.start = head_end + 4

    def _fill(self) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buffer):
            # Move what is left to the front; headers are tiny, so it fits.
            left = self.end - self.start
            self.buffer[:left] = self.buffer[self.start : self.end]
            self.start, self.end = 0, left
        count = self.sock.recv_into(self.view[self.end :])
        if not count:
            raise ConnectionError("server closed the connection")
        self.end += count

    def _take(self, count: int) -> bytes:
        while self.end - self.start < count:
            self._fill()
        data = bytes(self.buffer[self.start : self.start + count])
        self.start += count
        return data

    def receive(self, keep: bytearray | None = None) -> int:
        """Read one message; return its size (its payload goes to ``keep``)."""
        total = 0
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            opcode = first & 0x0F
            if opcode >= 0x8:
                body = self._take(length)
                if opcode == 0x8:
                    raise ConnectionError(f"server closed: {body!r}")
                continue  # a ping or pong: keepalive is off, so ignore it
            total += length
            while length:
                if self.start == self.end:
                    self._fill()
                step = min(length, self.end - self.start)
                if keep is not None:
                    keep += self.view[self.start : self.start + step]
                self.start += step
                length -= step
            if first & 0x80:
                return total

    def batch(self, frame: bytes, size: int, count: int) -> None:
        send = self.sock.sendall
        receive = self.receive
        for _ in range(count):
            send(frame)
            if receive() != size:
                raise AssertionError("echo of the wrong size")

    def close(self) -> None:
        try:
            self.sock.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
            while True:
                self.receive()
        except (ConnectionError, OSError):
            pass
        self.sock.close()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame with a fresh mask: header, masking key, masked payload."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 2**16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return header + mask + masked


def _run_raw(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    client = RawClient(args.url, context)
    payload = os.urandom(args.size)
    frame = masked_frame(0x2, payload)
    client.sock.sendall(frame)
    echoed = bytearray()
    client.receive(echoed)
    if echoed != payload:
        raise AssertionError("the server's echo differs from the message sent")
    client.batch(masked_frame(0x2, os.urandom(WARMUP_LARGE_SIZE)), WARMUP_LARGE_SIZE, args.warmup_large)
    client.batch(frame, args.size, args.warmup)
    meter = _Meter(args.server_pid)
    client.batch(frame, args.size, args.round_trips)
    sample = meter.sample("raw", args.size, args.round_trips, client.tls())
    client.close()
    return sample


# -- entry point ---------------------------------------------------------------------


def _tls_description(ssl_object: Any) -> str | None:
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return f"{cipher[1]} {cipher[0]}" if cipher else None


def default_driver() -> str:
    try:
        import picows  # noqa: F401
    except ImportError:
        return "raw"
    return "picows"


def default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200, help="round trips of --size before timing")
    parser.add_argument("--warmup-large", type=int, default=4, help="1 MiB round trips before timing")
    parser.add_argument("--driver", choices=("picows", "raw"), default=None)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None, help="for the picows driver")
    parser.add_argument("--cafile", help="CA certificate to trust for wss")
    args = parser.parse_args(argv)
    context = None
    if args.url.startswith("wss:"):
        from wsskit.tls import client_context

        context = client_context(cafile=args.cafile)
    driver = args.driver or default_driver()
    if driver == "raw":
        sample = _run_raw(args, context)
    elif (args.loop or default_loop()) == "uvloop":
        import uvloop

        sample = uvloop.run(_run_picows(args, context))
    else:
        sample = asyncio.run(_run_picows(args, context))
    json.dump(asdict(sample), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
