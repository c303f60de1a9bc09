"""Many cheap client connections in one process, for the broadcast and memory measurements.

    python bench/crowd.py --url ws://127.0.0.1:PORT/ --connections 2500 --mode listen --messages 5
    python bench/crowd.py --url wss://127.0.0.1:PORT/ --connections 2500 --mode hold --cafile ca.pem

No WebSocket library here: plain blocking sockets open the connections in
batches (TCP connect, TLS for wss, then the upgrade requests of a batch,
then their responses), so the server does the handshakes while this process
costs little. It prints ``READY <connections>`` once every handshake is
done (a ``101``), then:

- ``--mode hold`` (memory): keeps the connections open and idle, reading
  nothing, until stdin says ``QUIT`` or ends;
- ``--mode listen`` (broadcast, ws:// only): waits for ``--messages``
  binary messages on every connection with epoll. The arrival time of a
  message on a connection is the kernel's receive timestamp of the data that
  completed it (``SO_TIMESTAMPNS``, CLOCK_REALTIME, taken when the bytes
  reached the socket, so how fast this process reads does not matter);
  without kernel timestamps, the clock when ``recvmsg`` returned. After the
  k-th message reached every connection it prints ``GOT k``; at the end one
  JSON object with every arrival time.

The process raises its RLIMIT_NOFILE to the hard limit, and exits after
``--lifetime`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import selectors
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

from common import emit, raise_nofile, wall_ns

# Linux's SO_TIMESTAMPNS (SCM_TIMESTAMPNS is the same number); Python does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
BATCH = 32


def _deadline_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("crowd: out of time")
    return left


def open_connections(
    url: str,
    count: int,
    context: ssl.SSLContext | None,
    deflate: bool,
    deadline: float,
    timestamps: bool = False,
) -> tuple[list[socket.socket], int]:
    """Open ``count`` WebSocket connections; return them and how many negotiated deflate."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    opened: list[socket.socket] = []
    deflated = 0
    while len(opened) < count:
        batch: list[socket.socket] = []
        for _ in range(min(BATCH, count - len(opened))):
            sock = socket.create_connection((host, port), timeout=_deadline_left(deadline))
            if timestamps:
                # Early: the kernel turns receive timestamps on a little after the
                # first socket asks, and stamps only packets that come later.
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            batch.append(sock)
        if context is not None:
            _tls_handshakes(batch, deadline)
        for sock in batch:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"{offer}\r\n"
            )
            sock.sendall(request.encode())
        for sock in batch:
            sock.settimeout(_deadline_left(deadline))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            response, _, rest = head.partition(b"\r\n\r\n")
            if response.split(b" ", 2)[1:2] != [b"101"]:
                raise ConnectionError(f"handshake failed: {response[:80]!r}")
            if rest:
                raise ConnectionError("data right after the handshake response")
            if b"permessage-deflate" in response.lower():
                deflated += 1
        opened += batch
    return opened, deflated


def _tls_handshakes(batch: list[socket.socket], deadline: float) -> None:
    """Run the TLS handshakes of a batch side by side, so the server always has one to work on."""
    waiting: dict[socket.socket, int] = {}
    for sock in batch:
        sock.setblocking(False)
        waiting[sock] = selectors.EVENT_READ | selectors.EVENT_WRITE
    with selectors.DefaultSelector() as selector:  # epoll: descriptors above 1023 are fine
        while waiting:
            for sock in list(waiting):
                assert isinstance(sock, ssl.SSLSocket)
                try:
                    sock.do_handshake()
                except ssl.SSLWantReadError:
                    waiting[sock] = selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    waiting[sock] = selectors.EVENT_WRITE
                else:
                    del waiting[sock]
            if not waiting:
                break
            for sock, events in waiting.items():
                selector.register(sock, events)
            selector.select(_deadline_left(deadline))
            for sock in waiting:
                selector.unregister(sock)
    for sock in batch:
        sock.setblocking(True)


def _stdin_says_quit(chunk: bytes) -> bool:
    return not chunk or b"QUIT" in chunk


def hold(sockets: list[socket.socket], deadline: float) -> None:
    """Keep the connections idle until stdin says QUIT (or ends, or time is up)."""
    while True:
        ready, _, _ = select.select([0], [], [], max(0.0, deadline - time.monotonic()))
        if not ready or _stdin_says_quit(os.read(0, 4096)):
            return


class _Reader:
    """Frames arriving on one connection: a byte count and a tiny header parser."""

    __slots__ = ("arrivals", "buffer", "need")

    def __init__(self) -> None:
        self.buffer = b""
        self.need = 0  # payload bytes still to come of the current frame
        self.arrivals: list[int] = []

    def feed(self, data: bytes, stamp: int) -> None:
        if self.need:
            if self.need > len(data):
                self.need -= len(data)
                return
            # The rest of the current frame is here (the buffer is empty meanwhile).
            self.arrivals.append(stamp)
            data = data[self.need :]
            self.need = 0
        data = self.buffer + data
        while data:
            if len(data) < 2:
                break
            length = data[1] & 0x7F
            offset = 2
            if length == 126:
                if len(data) < 4:
                    break
                length = int.from_bytes(data[2:4], "big")
                offset = 4
            elif length == 127:
                if len(data) < 10:
                    break
                length = int.from_bytes(data[2:10], "big")
                offset = 10
            if data[0] & 0x0F != 0x2:
                raise ConnectionError(f"unexpected frame: opcode {data[0] & 0x0F}")
            available = len(data) - offset
            if available >= length:
                self.arrivals.append(stamp)
                data = data[offset + length :]
            else:
                self.need = length - available
                data = b""
        self.buffer = data


def listen(sockets: list[socket.socket], messages: int, deadline: float) -> dict[str, object]:
    """Wait for ``messages`` messages on every connection; record when each arrived."""
    poll = select.epoll()
    readers: dict[int, tuple[socket.socket, _Reader]] = {}
    kernel_stamps = 0
    user_stamps = 0
    for sock in sockets:
        sock.setblocking(False)
        readers[sock.fileno()] = (sock, _Reader())
        poll.register(sock.fileno(), select.EPOLLIN)
    poll.register(0, select.EPOLLIN)
    complete = [0] * (messages + 1)  # complete[k]: connections that have k messages
    complete[0] = len(sockets)
    reported = 0
    space = socket.CMSG_SPACE(_TIMESPEC.size)
    while reported < messages:
        events = poll.poll(min(1.0, _deadline_left(deadline)))
        for fd, _ in events:
            if fd == 0:
                if _stdin_says_quit(os.read(0, 4096)):
                    raise TimeoutError("told to quit before every message arrived")
                continue
            sock, reader = readers[fd]
            while True:
                try:
                    data, ancillary, _, _ = sock.recvmsg(65536, space)
                except BlockingIOError:
                    break
                if not data:
                    raise ConnectionError("the server closed a connection")
                stamp = 0
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                        stamp = seconds * 1_000_000_000 + nanoseconds
                if stamp:
                    kernel_stamps += 1
                else:
                    stamp = wall_ns()
                    user_stamps += 1
                before = len(reader.arrivals)
                reader.feed(data, stamp)
                for have in range(before, min(len(reader.arrivals), messages)):
                    complete[have] -= 1
                    complete[have + 1] += 1
        while reported < messages and sum(complete[reported + 1 :]) == len(sockets):
            reported += 1
            print(f"GOT {reported}", flush=True)
    poll.close()
    arrivals = [[reader.arrivals[k] for _, reader in readers.values()] for k in range(messages)]
    return {"connections": len(sockets), "arrivals": arrivals, "kernel": kernel_stamps, "user": user_stamps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--mode", choices=("hold", "listen"), default="hold")
    parser.add_argument("--messages", type=int, default=1, help="listen: messages to wait for")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--cafile", help="CA certificate to trust for wss")
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.lifetime
    limit = raise_nofile()
    if args.connections + 16 > limit:
        sys.exit(
            f"crowd: {args.connections} connections need more file descriptors than {limit} (ulimit -Hn)"
        )
    context = None
    if args.url.startswith("wss:"):
        if args.mode == "listen":
            sys.exit("crowd: listen mode is ws:// only")
        from wsskit.tls import client_context

        context = client_context(cafile=args.cafile)
    sockets, deflated = open_connections(
        args.url, args.connections, context, args.deflate, deadline, timestamps=args.mode == "listen"
    )
    print(f"READY {len(sockets)} {deflated}", flush=True)
    if args.mode == "hold":
        hold(sockets, deadline)
    else:
        emit(listen(sockets, args.messages, deadline))
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    try:
        main()
    except (OSError, TimeoutError, ConnectionError) as exc:
        sys.exit(f"crowd: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        sys.exit(1)
