"""What every recipe test checks, through the balancer: echo, spread, channels across nodes, failover."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest
from deploy.lab.processes import ServeNode

from wsskit.asyncio import connect
from wsskit.asyncio.client import ClientConnection
from wsskit.channels import Client

__all__ = [
    "serve_supports",
    "wait_counts",
    "open_echoes",
    "echo_spread",
    "channels_across_nodes",
    "new_connections_avoid",
    "refused_with",
]

#: Generous: the machine is shared and loaded.
WAIT = 30.0


@functools.cache
def serve_supports(option: str) -> bool:
    """Whether this ``wsskit serve`` knows ``option`` (the drain options came later)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "wsskit", "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return option in help_text


async def wait_counts(nodes: Sequence[ServeNode], path: str, total: int) -> list[int]:
    """Each node's count of opened ``path`` connections, once they add up to ``total``.

    The nodes log a connection after its handshake, read by a thread: poll.
    Raises :class:`AssertionError` when the sum stays below ``total``.
    """
    deadline = time.monotonic() + WAIT
    while True:
        counts = [node.opened(path) for node in nodes]
        if sum(counts) >= total or time.monotonic() > deadline:
            assert sum(counts) == total, f"opened {path}: {counts}, expected {total} in all"
            return counts
        await asyncio.sleep(0.05)


async def open_echoes(port: int, context: ssl.SSLContext, count: int) -> list[ClientConnection]:
    """Open ``count`` echo connections through the balancer, one after the other; each echoes."""
    opened: list[ClientConnection] = []
    for i in range(count):
        ws = await connect(f"wss://127.0.0.1:{port}/echo", ssl=context, open_timeout=WAIT)
        opened.append(ws)
        await ws.send(f"hello {i}")
        assert await asyncio.wait_for(ws.recv(), WAIT) == f"hello {i}"
    return opened


async def echo_spread(
    port: int, context: ssl.SSLContext, nodes: Sequence[ServeNode], *, client_addresses: bool, count: int = 8
) -> None:
    """Echo works through the balancer and open connections land on every node.

    ``client_addresses``: the nodes log each client's own address and port
    (learnt from a PROXY protocol header), not the balancer's.
    """
    before = [node.opened("/echo") for node in nodes]
    connections = await open_echoes(port, context, count)
    try:
        after = await wait_counts(nodes, "/echo", sum(before) + count)
        spread = [a - b for a, b in zip(after, before, strict=True)]
        assert all(n > 0 for n in spread), f"connections per node: {spread}"
        for ws in connections if client_addresses else []:
            host, client_port = ws.local_address[:2]
            seen = sum(node.count(f"{host}:{client_port} opened /echo") for node in nodes)
            assert seen == 1, f"the nodes logged the client {host}:{client_port} {seen} times"
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))


async def channels_across_nodes(port: int, context: ssl.SSLContext, nodes: Sequence[ServeNode]) -> None:
    """Two channel clients on different nodes: a publication of one reaches the other."""
    url = f"wss://127.0.0.1:{port}/channels"
    base = [node.opened("/channels") for node in nodes]
    received: asyncio.Queue[object] = asyncio.Queue()
    async with Client(url, ssl=context, ping_interval=None) as alice:
        first = await wait_counts(nodes, "/channels", sum(base) + 1)
        async with Client(url, ssl=context, ping_interval=None) as bob:
            second = await wait_counts(nodes, "/channels", sum(base) + 2)
            alice_node = [f - b for f, b in zip(first, base, strict=True)].index(1)
            bob_node = [s - f for s, f in zip(second, first, strict=True)].index(1)
            # leastconn: with alice's connection open, bob goes to the other node.
            assert alice_node != bob_node, f"both on {nodes[alice_node].name}"
            await bob.subscribe("chat:deploy", lambda message: received.put_nowait(message.data))
            await alice.subscribe("chat:deploy", lambda message: None)
            await alice.publish("chat:deploy", {"text": "across nodes"})
            assert await asyncio.wait_for(received.get(), WAIT) == {"text": "across nodes"}


async def new_connections_avoid(
    port: int, context: ssl.SSLContext, gone: ServeNode, alive: ServeNode, count: int = 6
) -> None:
    """``count`` new echo connections through the balancer all succeed, and none reaches ``gone``."""
    gone_before, alive_before = gone.opened("/echo"), alive.opened("/echo")
    connections = await open_echoes(port, context, count)
    try:
        await wait_counts([alive], "/echo", alive_before + count)
        assert gone.opened("/echo") == gone_before
    finally:
        for ws in connections:
            with contextlib.suppress(Exception):
                await ws.close()


async def refused_with(port: int, wrong: ssl.SSLContext) -> None:
    """A client trusting the other CA fails its TLS handshake through the balancer."""
    with pytest.raises(ssl.SSLCertVerificationError):
        ws = await connect(f"wss://127.0.0.1:{port}/echo", ssl=wrong, open_timeout=WAIT)
        await ws.close()
