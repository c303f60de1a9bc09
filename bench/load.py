"""Load generator for the throughput measurement: many connections, echoes as fast as they come.

    python bench/load.py --url ws://127.0.0.1:PORT/ --server-pid PID --connections 100 --size 1024

picows's Cython client on uvloop opens ``--connections`` connections. Each
warms up with ``--warmup-large`` messages of 256 KiB, then keeps one message
of ``--size`` bytes in flight: the next goes from the frame callback as soon
as the echo is complete, so the server always has work queued on every
connection. After ``--warmup`` seconds of that, the number of echoes, the
wall clock and both processes' CPU time are read, again ``--duration``
seconds later, and one JSON object is printed. bench/run.py pins this
process to the other CPU than the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, cast

from common import MAX_SIZE, cpu_ns, emit, raise_nofile

LARGE = 256 * 1024


@dataclass
class _Stats:
    count: int = 0
    running: bool = True
    in_flight: int = 0
    errors: list[str] = field(default_factory=list)


async def _run(args: argparse.Namespace, context: ssl.SSLContext | None) -> dict[str, Any]:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    stats = _Stats()
    idle = asyncio.Event()

    class Driver(WSListener):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            self.payload = b""
            self.received = 0
            self.large_left = 0
            self.warm: asyncio.Future[None] | None = None

        def warm_up(self, transport: WSTransport, count: int) -> asyncio.Future[None]:
            self.warm = asyncio.get_running_loop().create_future()
            self.large_left = count
            if count:
                transport.send(WSMsgType.BINARY, os.urandom(LARGE))
            else:
                self.warm.set_result(None)
            return self.warm

        def start(self, transport: WSTransport, payload: bytes) -> None:
            self.payload = payload
            stats.in_flight += 1
            transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
                self.received += frame.payload_size
                if not frame.fin:
                    return
                size, self.received = self.received, 0
                if self.large_left:
                    self.large_left -= 1
                    if self.large_left:
                        transport.send(WSMsgType.BINARY, os.urandom(LARGE))
                    elif self.warm is not None:
                        self.warm.set_result(None)
                    return
                if size != len(self.payload):
                    stats.errors.append(f"echo of {size} bytes for {len(self.payload)}")
                stats.count += 1
                if stats.running:
                    transport.send(WSMsgType.BINARY, self.payload)
                else:
                    stats.in_flight -= 1
                    if not stats.in_flight:
                        idle.set()
            elif kind is WSMsgType.CLOSE:
                stats.errors.append(f"server closed: {frame.get_close_code()}")

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if stats.running:
                stats.errors.append("disconnected")

    connections: list[tuple[Any, Driver]] = []
    batch = 25
    for start in range(0, args.connections, batch):
        opened = await asyncio.gather(
            *(
                ws_connect(Driver, args.url, ssl_context=context, max_frame_size=MAX_SIZE)
                for _ in range(min(batch, args.connections - start))
            )
        )
        connections += [(transport, cast(Driver, driver)) for transport, driver in opened]
    await asyncio.gather(*(driver.warm_up(transport, args.warmup_large) for transport, driver in connections))
    payload = os.urandom(args.size)
    for transport, driver in connections:
        driver.start(transport, payload)
    await asyncio.sleep(args.warmup)
    count0 = stats.count
    wall0 = time.perf_counter()
    server0 = cpu_ns(args.server_pid)
    load0 = cpu_ns(os.getpid())
    await asyncio.sleep(args.duration)
    count1 = stats.count
    wall1 = time.perf_counter()
    server1 = cpu_ns(args.server_pid)
    load1 = cpu_ns(os.getpid())
    stats.running = False
    try:
        await asyncio.wait_for(idle.wait(), 30)
    except asyncio.TimeoutError:
        stats.errors.append("echoes still missing 30 s after the end")
    for transport, _ in connections:
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
    if stats.errors:
        raise ConnectionError(f"{len(stats.errors)} errors, first: {stats.errors[0]}")
    return {
        "connections": args.connections,
        "size": args.size,
        "messages": count1 - count0,
        "wall_s": wall1 - wall0,
        "server_cpu_ns": server1 - server0,
        "load_cpu_ns": load1 - load0,
    }


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
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds timed")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds of load before timing")
    parser.add_argument("--warmup-large", type=int, default=2, help="256 KiB messages per connection first")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--cafile", help="CA certificate to trust for wss")
    parser.add_argument("--timeout", type=int, default=120, help="seconds before the process gives up")
    args = parser.parse_args(argv)
    _give_up_after(args.timeout)
    raise_nofile()
    context = None
    if args.url.startswith("wss:"):
        from wsskit.tls import client_context

        context = client_context(cafile=args.cafile)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(_run(args, context))
    else:
        result = asyncio.run(_run(args, context))
    emit(result)


if __name__ == "__main__":
    main()
