"""Sequential echo round trips on one connection, with one of several clients.

    python bench/client.py --url ws://127.0.0.1:PORT/ --server-pid PID --size 1024 --round-trips 5000

It connects, checks that a first message comes back unchanged, warms up
with a few large messages and some of the size under test, then sends
``--round-trips`` messages one after the other, each only once the
previous echo is complete. Around that timed loop it reads the wall clock,
its own CPU time and the server process's CPU time, and prints one JSON
object on stdout.

Drivers (``--driver``):

- ``picows`` (the fixed client of the server measurements): picows's Cython
  client on uvloop (or asyncio), driven from its frame callback with no
  coroutine per message;
- ``raw``: a blocking socket (TLS-wrapped for wss) that sends one pre-built,
  pre-masked frame and parses the echo itself; with ``--deflate`` it offers
  permessage-deflate, sends one pre-compressed frame and inflates the echoes
  (the fixed client of the compression measurements);
- ``wsskit``, ``websockets``, ``aiohttp``: each library's client as its users
  write it (``await ws.send(message)`` then ``await ws.recv()``), for the
  client-side measurements.

``--payload random`` sends random bytes as binary messages; ``--payload json``
sends JSON-like text as text messages.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from common import (
    MAX_SIZE,
    WARMUP_LARGE_SIZE,
    cpu_ns,
    cpu_ticks_ns,
    emit,
    json_like_text,
    masked_frame,
    tls_description,
)

DRIVERS = ("picows", "raw", "wsskit", "websockets", "aiohttp")
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


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
    client_process_ns: int
    tls: str | None = None
    extensions: str | None = None
    wire_bytes: int | None = None


class _Meter:
    """Readings of the clock and both processes' CPU, taken before and after."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.client = cpu_ns(os.getpid())
        self.process = time.process_time_ns()
        self.server = cpu_ns(server_pid)
        self.ticks = cpu_ticks_ns(server_pid)
        self.wall = time.perf_counter()

    def sample(self, driver: str, size: int, round_trips: int, tls: str | None) -> Sample:
        wall = time.perf_counter()
        server = cpu_ns(self.server_pid)
        ticks = cpu_ticks_ns(self.server_pid)
        client = cpu_ns(os.getpid())
        process = time.process_time_ns()
        return Sample(
            driver=driver,
            size=size,
            round_trips=round_trips,
            wall_s=wall - self.wall,
            server_cpu_ns=server - self.server,
            server_ticks_ns=ticks - self.ticks,
            client_cpu_ns=client - self.client,
            client_process_ns=process - self.process,
            tls=tls,
        )


def _payload(args: argparse.Namespace) -> bytes | str:
    return json_like_text(args.size) if args.payload == "json" else os.urandom(args.size)


def _large(args: argparse.Namespace) -> bytes | str:
    return (
        json_like_text(WARMUP_LARGE_SIZE, seed=7) if args.payload == "json" else os.urandom(WARMUP_LARGE_SIZE)
    )


# -- picows driver -------------------------------------------------------------------


async def _run_picows(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Driver(WSListener):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            self.kind = WSMsgType.BINARY
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
            transport.send(self.kind, payload)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is self.kind or kind is WSMsgType.CONTINUATION:
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
                    transport.send(self.kind, self.payload)
                elif self.done is not None and not self.done.done():
                    self.done.set_result(bytes(self.keep or b""))
            elif kind is WSMsgType.CLOSE:
                self._fail(f"server closed: {frame.get_close_code()} {frame.get_close_message()!r}")
            elif kind is not WSMsgType.PONG:
                self._fail(f"unexpected {kind} frame")

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self._fail("disconnected")

        def _fail(self, why: str) -> None:
            if self.done is not None and not self.done.done():
                self.done.set_exception(ConnectionError(why))

    transport, listener = await ws_connect(Driver, args.url, ssl_context=context, max_frame_size=MAX_SIZE)
    assert isinstance(listener, Driver)
    driver: Driver = listener
    if args.payload == "json":
        driver.kind = WSMsgType.TEXT

    async def batch(payload: bytes, count: int, keep: bool = False) -> bytes:
        if count <= 0:
            return b""
        driver.run(transport, payload, count, keep)
        assert driver.done is not None
        return await driver.done

    tls = tls_description(transport.underlying_transport.get_extra_info("ssl_object"))
    message = _payload(args)
    payload = message.encode() if isinstance(message, str) else message
    large = _large(args)
    if await batch(payload, 1, keep=True) != payload:
        raise AssertionError("the server's echo differs from the message sent")
    await batch(large.encode() if isinstance(large, str) else large, args.warmup_large)
    await batch(payload, args.warmup)
    meter = _Meter(args.server_pid)
    await batch(payload, args.round_trips)
    sample = meter.sample("picows", args.size, args.round_trips, tls)
    transport.send_close(WSCloseCode.OK)
    transport.disconnect()
    await transport.wait_disconnected()
    return sample


# -- the libraries' own clients ------------------------------------------------------


async def _timed_loop(
    args: argparse.Namespace,
    name: str,
    send: Callable[[Any], Awaitable[None]],
    recv: Callable[[], Awaitable[Any]],
    tls: str | None,
) -> Sample:
    """The idiomatic loop: send a message, await its echo, repeat."""
    message = _payload(args)
    await send(message)
    if await recv() != message:
        raise AssertionError("the server's echo differs from the message sent")
    large = _large(args)
    for _ in range(args.warmup_large):
        await send(large)
        await recv()
    for _ in range(args.warmup):
        await send(message)
        await recv()
    size = len(message)
    meter = _Meter(args.server_pid)
    for _ in range(args.round_trips):
        await send(message)
        if len(await recv()) != size:
            raise AssertionError("echo of the wrong size")
    return meter.sample(name, args.size, args.round_trips, tls)


async def _run_wsskit(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    from wsskit.asyncio import connect

    async with connect(args.url, ssl=context, compression=None, ping_interval=None, max_size=MAX_SIZE) as ws:
        return await _timed_loop(args, "wsskit", ws.send, ws.recv, tls_description(ws.ssl_object))


async def _run_websockets(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    from websockets.asyncio.client import connect

    async with connect(args.url, ssl=context, compression=None, ping_interval=None, max_size=MAX_SIZE) as ws:
        tls = tls_description(ws.transport.get_extra_info("ssl_object"))
        return await _timed_loop(args, "websockets", ws.send, ws.recv, tls)


async def _run_aiohttp(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            args.url,
            ssl=context if context is not None else False,
            compress=0,
            heartbeat=None,
            max_msg_size=MAX_SIZE,
        ) as ws,
    ):

        async def send(message: bytes | str) -> None:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)

        async def recv() -> bytes | str:
            message = await ws.receive()
            if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                raise ConnectionError(f"unexpected {message.type}")
            data: bytes | str = message.data
            return data

        ssl_object = ws.get_extra_info("ssl_object")
        return await _timed_loop(args, "aiohttp", send, recv, tls_description(ssl_object))


# -- raw socket driver ---------------------------------------------------------------


class RawClient:
    """A blocking WebSocket client that knows just enough RFC 6455 (and 7692) for echoes."""

    def __init__(self, url: str, context: ssl.SSLContext | None, *, deflate: bool = False) -> None:
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
        self.extensions: str | None = None
        self.client_bits = 15
        self.server_bits = 15
        self.inflater: Any = None
        self.wire_in = 0
        self._handshake(f"{host}:{port}", parts.path or "/", deflate)

    def tls(self) -> str | None:
        return tls_description(self.sock) if isinstance(self.sock, ssl.SSLSocket) else None

    def _handshake(self, authority: str, path: str, deflate: bool) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
        self.sock.sendall(request.encode())
        while (head_end := self.buffer.find(b"\r\n\r\n", 0, self.end)) < 0:
            self._fill()
        head = bytes(self.buffer[:head_end]).decode("latin-1")
        status, *fields = head.split("\r\n")
        if status.split()[1:2] != ["101"]:
            raise ConnectionError(f"handshake failed: {status!r}")
        for line in fields:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                self.extensions = value.strip()
        if deflate:
            if not self.extensions or "permessage-deflate" not in self.extensions:
                raise ConnectionError("the server did not accept permessage-deflate")
            for param in self.extensions.split(";")[1:]:
                name, _, value = param.strip().partition("=")
                if name == "client_max_window_bits" and value:
                    self.client_bits = int(value.strip('"'))
                elif name == "server_max_window_bits" and value:
                    self.server_bits = int(value.strip('"'))
            # One inflater for the connection: it decodes messages compressed with
            # or without context takeover alike.
            self.inflater = zlib.decompressobj(-self.server_bits)
        self.start = head_end + 4

    def compressed_frame(self, message: bytes | str) -> bytes:
        """One masked frame with RSV1 set: the message compressed on its own (RFC 7692 §7.2.1)."""
        data = message.encode() if isinstance(message, str) else message
        compressor = zlib.compressobj(wbits=-self.client_bits)
        body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if body.endswith(_DEFLATE_TAIL):
            body = body[: -len(_DEFLATE_TAIL)]
        return masked_frame(0x1 if isinstance(message, str) else 0x2, body, rsv1=True)

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
        """Read one message; return its size once inflated (its payload goes to ``keep``)."""
        total = 0
        compressed: bytearray | None = None
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
            self.wire_in += length
            if first & 0x40:
                compressed = bytearray()
            target = compressed if compressed is not None else keep
            if compressed is None:
                total += length
            while length:
                if self.start == self.end:
                    self._fill()
                step = min(length, self.end - self.start)
                if target is not None:
                    target += self.view[self.start : self.start + step]
                self.start += step
                length -= step
            if first & 0x80:
                if compressed is not None:
                    data = self.inflater.decompress(bytes(compressed) + _DEFLATE_TAIL)
                    if keep is not None:
                        keep += data
                    total = len(data)
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


def _run_raw(args: argparse.Namespace, context: ssl.SSLContext | None) -> Sample:
    client = RawClient(args.url, context, deflate=args.deflate)
    message = _payload(args)
    data = message.encode() if isinstance(message, str) else message
    large = _large(args)

    def frame_of(message: bytes | str) -> bytes:
        if args.deflate:
            return client.compressed_frame(message)
        raw = message.encode() if isinstance(message, str) else message
        return masked_frame(0x1 if isinstance(message, str) else 0x2, raw)

    frame = frame_of(message)
    client.sock.sendall(frame)
    echoed = bytearray()
    client.receive(echoed)
    if echoed != data:
        raise AssertionError("the server's echo differs from the message sent")
    client.batch(frame_of(large), WARMUP_LARGE_SIZE, args.warmup_large)
    client.batch(frame, len(data), args.warmup)
    wire_before = client.wire_in
    meter = _Meter(args.server_pid)
    client.batch(frame, len(data), args.round_trips)
    sample = meter.sample("raw", args.size, args.round_trips, client.tls())
    sample.extensions = client.extensions
    # Bytes per message each way (payload bytes on the wire; the client's frame is the same each time).
    sample.wire_bytes = (client.wire_in - wire_before) // max(args.round_trips, 1)
    client.close()
    return sample


# -- entry point ---------------------------------------------------------------------


def _give_up_after(seconds: int) -> None:
    """A hung server must not hang the run: raise TimeoutError (with a traceback) after ``seconds``."""

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"gave up after {seconds} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)


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
    parser.add_argument("--driver", choices=DRIVERS, default="picows")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--payload", choices=("random", "json"), default="random")
    parser.add_argument("--deflate", action="store_true", help="raw driver: offer permessage-deflate")
    parser.add_argument("--cafile", help="CA certificate to trust for wss")
    parser.add_argument("--timeout", type=int, default=120, help="seconds before the process gives up")
    args = parser.parse_args(argv)
    _give_up_after(args.timeout)
    if args.deflate and args.driver != "raw":
        parser.error("--deflate goes with --driver raw")
    context = None
    if args.url.startswith("wss:"):
        from wsskit.tls import client_context

        context = client_context(cafile=args.cafile)
    if args.driver == "raw":
        sample = _run_raw(args, context)
    else:
        runner = {
            "picows": _run_picows,
            "wsskit": _run_wsskit,
            "websockets": _run_websockets,
            "aiohttp": _run_aiohttp,
        }[args.driver]
        if args.loop == "uvloop":
            import uvloop

            sample = uvloop.run(runner(args, context))
        else:
            sample = asyncio.run(runner(args, context))
    emit(asdict(sample))


if __name__ == "__main__":
    main()
