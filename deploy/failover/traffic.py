"""The failover's client processes: ``subscribers`` or ``publisher``, driven over stdin.

``python -m deploy.failover.traffic subscribers URL CAFILE --channels a,b --clients N``
runs N :class:`wsskit.channels.Client` through the balancer, client ``i``
subscribed to channel ``i mod len(channels)``. ``publisher`` runs one client
per channel, each publishing ``{"seq": n}`` with n = 1, 2, 3... at its share
of ``--rate``, one at a time: a publish that fails (error 108 while the
broker is down, a timeout) is sent again with the same idempotency key until
it is acknowledged, so the acknowledged numbers of a channel have no holes.

Commands, one per line on stdin; each answer is one line ``>> <command> <json>``:

- both: ``status`` (``{"live", "total", "ended"}``), ``quit``;
- subscribers: ``wait {"channel": hi, ...} SECONDS`` (until every client holds
  its channel's ``hi``), ``report {"ranges": {"channel": [lo, hi]}, "since": T}``
  (a :class:`~deploy.failover.tally.Tally`, reconnect times of the losses after T);
- publisher: ``start``, ``cut`` (the acknowledged range per channel since the last cut).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from wsskit import tls
from wsskit.channels import ChannelError, Client
from wsskit.channels.client import ChannelMessage
from wsskit.exceptions import ConnectionClosed

from .tally import Tally, tally_timeline

__all__ = ["main"]

log = logging.getLogger("deploy.failover.traffic")


def _answer(command: str, payload: object) -> None:
    print(f">> {command} {json.dumps(payload)}", flush=True)


@dataclass
class _Subscriber:
    """One client's view: what it received and when it lost and regained its subscription."""

    channel: str
    client: Client | None = None
    timeline: list[int | None] = field(default_factory=list)
    live: bool = False
    down_since: float | None = None
    #: (when the connection was lost, how long until the subscription was back)
    reconnects: list[tuple[float, float]] = field(default_factory=list)
    #: (when, recovered) for every resumption
    recoveries: list[tuple[float, bool]] = field(default_factory=list)
    highest: int = 0

    def on_publication(self, message: ChannelMessage) -> None:
        seq = int(message.data["seq"])
        self.timeline.append(seq)
        self.highest = max(self.highest, seq)

    def on_recovery(self, recovered: bool, missed: int) -> None:
        now = time.time()
        if not recovered:
            self.timeline.append(None)
        self.recoveries.append((now, recovered))
        if self.down_since is not None:
            self.reconnects.append((self.down_since, now - self.down_since))
            self.down_since = None
        self.live = True

    def on_disconnect(self, code: int, reason: str) -> None:
        self.live = False
        if self.down_since is None:
            self.down_since = time.time()


async def _subscribers(args: argparse.Namespace) -> None:
    context = tls.client_context(cafile=args.cafile)
    channels = args.channels.split(",")
    subs = [_Subscriber(channels[(args.first + i) % len(channels)]) for i in range(args.clients)]

    async def start(sub: _Subscriber) -> None:
        client = Client(args.url, ssl=context, timeout=30.0, on_disconnect=sub.on_disconnect)
        sub.client = client
        await client.connect()
        await client.subscribe(sub.channel, sub.on_publication, on_recovery=sub.on_recovery)
        sub.live = True

    # A few at a time: a burst of TLS handshakes is what the storm tool tests, not this.
    for i in range(0, len(subs), 20):
        await asyncio.gather(*(start(sub) for sub in subs[i : i + 20]))
    _answer("ready", {"clients": len(subs)})

    def status() -> dict[str, int]:
        ended = sum(1 for s in subs if s.client is None or s.client.failure is not None)
        return {"live": sum(s.live for s in subs), "total": len(subs), "ended": ended}

    async for command, rest in _commands():
        if command == "status":
            _answer(command, status())
        elif command == "wait":
            goal_text, seconds = rest.rsplit(" ", 1)
            goals: dict[str, int] = json.loads(goal_text)
            deadline = time.monotonic() + float(seconds)
            while time.monotonic() < deadline:
                behind = sum(1 for s in subs if s.highest < goals.get(s.channel, 0))
                if not behind:
                    break
                await asyncio.sleep(0.1)
            behind = sum(1 for s in subs if s.highest < goals.get(s.channel, 0))
            _answer(command, {"behind": behind})
        elif command == "report":
            request = json.loads(rest)
            total = Tally()
            for sub in subs:
                lo, hi = request["ranges"].get(sub.channel, [1, 0])
                one = tally_timeline(sub.timeline, lo, hi)
                since = float(request["since"])
                one.reconnects = [took for at, took in sub.reconnects if at >= since]
                resumed = [ok for at, ok in sub.recoveries if at >= since]
                one.clients_told = int(False in resumed)
                one.clients_recovered = int(bool(resumed) and all(resumed))
                total = total + one
            _answer(command, total.as_dict())
        elif command == "quit":
            await asyncio.gather(*(s.client.close() for s in subs if s.client is not None))
            _answer(command, {})
            return


async def _publisher(args: argparse.Namespace) -> None:
    context = tls.client_context(cafile=args.cafile)
    channels = args.channels.split(",")
    interval = len(channels) / args.rate
    acked = dict.fromkeys(channels, 0)
    cut_at = dict.fromkeys(channels, 0)
    failures: dict[str, int] = {}
    clients = {channel: Client(args.url, ssl=context, timeout=10.0) for channel in channels}
    await asyncio.gather(*(client.connect() for client in clients.values()))
    running = asyncio.Event()
    run_id = f"{time.time_ns():x}"

    async def publish_loop(channel: str) -> None:
        client = clients[channel]
        await running.wait()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        seq = 0
        while True:
            seq += 1
            key = f"{run_id}-{channel}-{seq}"
            while True:
                try:
                    await client.publish(channel, {"seq": seq}, idempotency_key=key)
                    break
                except (ChannelError, TimeoutError) as exc:
                    # Unavailable (108) or no reply yet: the same key again, so it is stored once.
                    name = type(exc).__name__ if not isinstance(exc, ChannelError) else f"error {exc.code}"
                    failures[name] = failures.get(name, 0) + 1
                    await asyncio.sleep(0.2)
            acked[channel] = seq
            next_at += interval
            now = loop.time()
            # After a stall, go on at the rate rather than catch up in a burst.
            next_at = max(next_at, now - interval)
            await asyncio.sleep(max(0.0, next_at - now))

    loops = [asyncio.create_task(publish_loop(channel)) for channel in channels]
    _answer("ready", {"channels": len(channels)})
    async for command, _rest in _commands():
        if command == "start":
            running.set()
            _answer(command, {})
        elif command == "cut":
            ranges = {channel: [cut_at[channel] + 1, acked[channel]] for channel in channels}
            cut_at.update(acked)
            _answer(command, {"ranges": ranges, "failures": dict(failures)})
            failures.clear()
        elif command == "status":
            broken = [t for t in loops if t.done()]
            ended = sum(1 for c in clients.values() if c.failure is not None) + len(broken)
            _answer(
                command,
                {"live": sum(c.connected for c in clients.values()), "total": len(clients), "ended": ended},
            )
        elif command == "quit":
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)
            _answer(command, {})
            return


async def _commands() -> Any:
    # stdin is read in a thread: the event loop keeps serving the clients meanwhile.
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            yield "quit", ""
            return
        command, _, rest = line.strip().partition(" ")
        if command:
            yield command, rest


def main(argv: list[str] | None = None) -> int:
    """Run the subscribers or the publisher until ``quit`` (or the end of stdin)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.failover.traffic")
    parser.add_argument("role", choices=["subscribers", "publisher"])
    parser.add_argument("url")
    parser.add_argument("cafile")
    parser.add_argument("--channels", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="channel index of the first client")
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_subscribers(args) if args.role == "subscribers" else _publisher(args))
    except ConnectionClosed as exc:
        print(f"traffic: ended: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
