"""A health prober: ``GET /healthz`` over TLS every ``--interval`` seconds, one JSON line per probe.

It runs in a process of its own, so that the storm's clients do not delay it,
and connects from its own loopback address (``--source``, 127.0.0.2 by
default): the node's per-IP connection rate limits the storm's clients, not a
health checker that comes from elsewhere, as a load balancer's would.

Each line: ``{"t": unix time sent, "latency": seconds, "connect": seconds of it
spent connecting, "status": HTTP status or the error's name}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time

__all__ = ["probe_once", "main"]


def probe_once(port: int, context: ssl.SSLContext, source: str, timeout: float) -> tuple[float, float, str]:
    """Time one ``GET /healthz``: (seconds in all, seconds to connect, status or error name).

    The connect time apart tells a full listen queue (the kernel drops the
    handshake and the client retries after 1 s) from a busy event loop.
    """
    started = time.perf_counter()
    connected = started
    try:
        address = ("127.0.0.1", port)
        with socket.create_connection(address, timeout=timeout, source_address=(source, 0)) as raw:
            connected = time.perf_counter()
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            with sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                head = sock.recv(1024).decode("latin-1")
        status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "no answer"
    except (OSError, ValueError) as exc:
        status = type(exc).__name__
    return time.perf_counter() - started, connected - started, status


def main(argv: list[str] | None = None) -> int:
    """Probe until killed (or until stdout is closed)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.storm.probe")
    parser.add_argument("port", type=int)
    parser.add_argument("cafile")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--source", default="127.0.0.2")
    args = parser.parse_args(argv)
    context = ssl.create_default_context(cafile=args.cafile)
    next_at = time.monotonic()
    while True:
        sent = time.time()
        latency, connect, status = probe_once(args.port, context, args.source, args.timeout)
        try:
            record = {"t": sent, "latency": latency, "connect": connect, "status": status}
            print(json.dumps(record), flush=True)
        except BrokenPipeError:
            return 0
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at, time.monotonic() - args.interval)


if __name__ == "__main__":
    sys.exit(main())
