"""Fixtures for the interop tests: a throwaway dev CA and the peers' servers.

The peers run for the whole session on ephemeral loopback ports, each
offering the same paths (see ``node/server.js``): ``/echo``, ``/describe``
and ``/close``, over ws:// and wss://, with and without permessage-deflate.

- the Node.js ``ws`` server (``node/server.js``): ``npm ci`` installs ``ws``
  into ``node/node_modules`` on first use. Without node or npm (or when the
  install fails) the Node tests are skipped, unless ``CI=true``: then they fail.
- a python-websockets server, in a thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator

import pytest
from websockets.asyncio.server import serve as ws_serve

from tests.interop.peers import NODE_DIR, Peer, missing, websockets_handler
from wsskit.certs import DevCertificates

STARTUP_TIMEOUT = 30
NPM_TIMEOUT = 300
MAX_SIZE = 64 * 2**20


# -- Node.js ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with ``ws`` installed in tests/interop/node (by ``npm ci`` if missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("node and npm are needed for the Node.js interop tests")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            missing(f"npm ci in {NODE_DIR} took more than {NPM_TIMEOUT} s")
        if result.returncode != 0:
            missing(f"npm ci in {NODE_DIR} failed:\n{result.stderr[-2000:]}")
    return node


@pytest.fixture(scope="session")
def node_server(node: str, certificates: DevCertificates) -> Iterator[Peer]:
    """``node/server.js``: the ``ws`` package's server, on four ports."""
    proc = subprocess.Popen(
        [node, "server.js", "--cert", str(certificates.cert), "--key", str(certificates.key)],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,  # closing it stops the server
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise AssertionError(f"server.js did not start: {proc.stderr.read()}")
        yield Peer("node", json.loads(line))
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# -- python-websockets ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def websockets_server(server_ssl: ssl.SSLContext) -> Iterator[Peer]:
    """python-websockets' server on four ports, in a thread with its own event loop."""
    ready = threading.Event()
    ports: dict[str, dict[str, int]] = {}
    holder: dict[str, asyncio.AbstractEventLoop | asyncio.Event] = {}

    async def run() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        servers = []
        for scheme, context in (("ws", None), ("wss", server_ssl)):
            for name, compression in (("deflate", "deflate"), ("plain", None)):
                server = await ws_serve(
                    websockets_handler,
                    "127.0.0.1",
                    0,
                    ssl=context,
                    compression=compression,
                    max_size=MAX_SIZE,
                )
                servers.append(server)
                ports.setdefault(scheme, {})[name] = server.sockets[0].getsockname()[1]
        ready.set()
        await stop.wait()
        for server in servers:
            server.close()
            await server.wait_closed()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="websockets-server", daemon=True)
    thread.start()
    assert ready.wait(STARTUP_TIMEOUT), "the websockets server did not start"
    try:
        yield Peer("websockets", ports)
    finally:
        loop, stop = holder["loop"], holder["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


@pytest.fixture(params=["node", "websockets"])
def peer(request: pytest.FixtureRequest) -> Peer:
    """Each peer's server in turn (the Node one only where node and npm are)."""
    server = request.getfixturevalue(f"{request.param}_server")
    assert isinstance(server, Peer)
    return server
