"""wsskit.js (the browser client) run by Node against a real Hub over TLS.

Node's own WebSocket (global from Node 22, behind ``--experimental-websocket``
in Node 20) plays the browser's; ``tests/channels/js/driver.js`` turns JSON
lines on stdin into calls of the client and reports results and callbacks as
JSON lines on stdout. Without Node the tests skip, unless ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.channels.conftest import TIMEOUT, TOKENS
from tests.channels.test_client import _kill, _namespaces, _serving
from wsskit.certs import DevCertificates
from wsskit.channels import Hub, MemoryBackplane, MemoryStore
from wsskit.channels.wire import should_reconnect

ROOT = Path(__file__).resolve().parents[2]
WSSKIT_JS = ROOT / "src" / "wsskit" / "app" / "web" / "wsskit.js"
DRIVER = Path(__file__).resolve().parent / "js" / "driver.js"
FAST = {"firstDelay": 50, "initialDelay": 20, "maxDelay": 200}


def _node_command() -> list[str]:
    """``node`` with what it needs for a global WebSocket; skip (or fail on CI) without one."""
    node = shutil.which("node")
    check = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    if node is not None:
        for flags in ([], ["--experimental-websocket"]):
            done = subprocess.run([node, *flags, "-e", check], capture_output=True, timeout=30, check=False)
            if done.returncode == 0:
                return [node, *flags]
    if os.environ.get("CI") == "true":
        pytest.fail("Node.js 20.10+ (with a WebSocket) is required on CI")
    pytest.skip("Node.js 20.10+ (with a WebSocket) is not installed")


@pytest.fixture(scope="module")
def node() -> list[str]:
    return _node_command()


class _Driver:
    """One Node process running driver.js; :meth:`call` runs an op, :attr:`events` collects callbacks."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            if "re" in message:
                self._replies.pop(message["re"]).set_result(message)
            else:
                self.events.append(message)
            async with self.changed:
                self.changed.notify_all()

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self._next += 1
        future = self._replies[self._next] = asyncio.get_running_loop().create_future()
        self.process.stdin.write(json.dumps({"re": self._next, "op": op, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(future, TIMEOUT)

    async def ok(self, op: str, **fields: Any) -> Any:
        reply = await self.call(op, **fields)
        assert "ok" in reply, reply
        return reply["ok"]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


@asynccontextmanager
async def _driver(node: list[str], certificates: DevCertificates) -> AsyncIterator[_Driver]:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(certificates.ca_cert)}
    process = await asyncio.create_subprocess_exec(
        *node,
        str(DRIVER),
        str(WSSKIT_JS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    driver = _Driver(process)
    try:
        yield driver
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await asyncio.gather(driver._reader, return_exceptions=True)


def test_wsskit_js_has_no_html_sinks() -> None:
    text = WSSKIT_JS.read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, sink


def test_wsskit_js_loads_as_a_classic_script(node: list[str]) -> None:
    # In a fresh global without module/require, as a <script> tag runs it.
    script = (
        "const vm = require('vm'); const fs = require('fs');"
        "const context = vm.createContext({});"
        "vm.runInContext(fs.readFileSync(process.argv[1], 'utf8'), context);"
        "const api = context.WsskitChannels;"
        "process.stdout.write(JSON.stringify([typeof api.Client, api.SUBPROTOCOL]));"
    )
    done = subprocess.run(
        [*node, "-e", script, str(WSSKIT_JS)], capture_output=True, timeout=30, check=True, text=True
    )
    assert json.loads(done.stdout) == ["function", "wsskit.channels.v1"]


async def test_close_code_table_matches_the_protocol(node: list[str], certificates: DevCertificates) -> None:
    async with _driver(node, certificates) as driver:
        table = await driver.ok("codes")
        assert {int(code): value for code, value in table.items()} == {
            code: should_reconnect(code) for code in range(1000, 5000)
        }


async def test_subscribe_publish_resume_and_recovered_false(
    node: list[str], certificates: DevCertificates, server_ssl: ssl.SSLContext
) -> None:
    store = MemoryStore()
    hub = Hub(MemoryBackplane(store), _namespaces())
    async with _driver(node, certificates) as driver:
        async with _serving(hub, server_ssl) as (server, url):
            port = server.sockets[0].getsockname()[1]
            # The token travels as the "access_token.<token>" subprotocol: chat needs it.
            await driver.ok("connect", url=url, token=TOKENS["alice"], options=FAST)
            subscribed = await driver.ok("subscribe", channel="feed:js")
            assert subscribed["offset"] == 0
            epoch = subscribed["epoch"]
            assert await driver.ok("publish", channel="feed:js", data={"text": "from js"}) == {
                "offset": 1,
                "epoch": epoch,
            }
            await hub.publish("feed:js", "from the backend")
            await driver.until(lambda: len(driver.of("pub")) == 2)
            assert [(e["offset"], e["data"]) for e in driver.of("pub")] == [
                (1, {"text": "from js"}),
                (2, "from the backend"),
            ]
            await driver.ok("subscribe", channel="chat:js")
            await driver.until(lambda: len(driver.of("join")) == 1)
            clients = await driver.ok("presence", channel="chat:js")
            assert [c["user"] for c in clients] == ["alice"]
            page = await driver.ok("history", channel="feed:js", options={"limit": 1})
            assert page["publications"] == [{"offset": 2, "data": "from the backend"}]
            refused = await driver.call("subscribe", channel="admins:x")
            assert refused["error"]["name"] == "ChannelError" and refused["error"]["code"] == 103

            # Dropped as a slow consumer; 300 published before it can notice.
            assert await _kill(server) == 1
            for n in range(300):
                await hub.publish("feed:js", n)
            await driver.until(lambda: len(driver.of("recovery")) == 2)
            assert sorted(r["missed"] for r in driver.of("recovery")) == [0, 300]
            assert all(r["recovered"] for r in driver.of("recovery"))
            await hub.publish("feed:js", "live")
            await driver.until(lambda: len(driver.of("pub")) == 303)
            pubs = driver.of("pub")
            assert [e["offset"] for e in pubs] == list(range(1, 304))
            assert [e["data"] for e in pubs[2:]] == [*range(300), "live"]
            assert driver.of("disconnect")[0]["code"] == 4000
            assert len(driver.of("reconnecting")) >= 1
            assert len(driver.of("connect")) == 2

        # The broker restarts without persistence while the server is down.
        store.clear()
        await driver.until(lambda: len(driver.of("disconnect")) == 2)
        async with _serving(Hub(MemoryBackplane(store), _namespaces()), server_ssl, port):
            await driver.until(lambda: len(driver.of("recovery")) == 4)
            assert [r["recovered"] for r in driver.of("recovery")[2:]] == [False, False]
            assert [r["missed"] for r in driver.of("recovery")[2:]] == [0, 0]
            after = await driver.ok("publish", channel="feed:js", data="new stream")
            assert after["offset"] == 1 and after["epoch"] != epoch
            await driver.until(lambda: len(driver.of("pub")) == 304)
            assert driver.of("pub")[-1]["epoch"] == after["epoch"]
            assert await driver.ok("close") is None
            await driver.until(lambda: len(driver.of("closed")) == 1)
            assert driver.of("closed") == [{"event": "closed", "error": None}]
        # Closing clears every timer: Node exits on its own once stdin ends.
        assert driver.process.stdin is not None
        driver.process.stdin.close()
        assert await asyncio.wait_for(driver.process.wait(), TIMEOUT) == 0


async def test_a_close_code_that_forbids_reconnecting_ends_the_js_client(
    node: list[str], certificates: DevCertificates, server_ssl: ssl.SSLContext
) -> None:
    hub = Hub(MemoryBackplane(), _namespaces())
    async with _driver(node, certificates) as driver, _serving(hub, server_ssl) as (server, url):
        await driver.ok("connect", url=url, options=FAST)
        await driver.ok("subscribe", channel="feed:x")
        await _kill(server, 4003)
        await driver.until(lambda: len(driver.of("closed")) == 1)
        assert "4003" in driver.of("closed")[0]["error"]
        assert driver.of("reconnecting") == []
        failed = await driver.call("ping")
        assert "error" in failed
