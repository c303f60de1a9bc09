"""Two tabs of the demo page ride out a server restart without losing a message.

The channels live in a private Redis (a memory backplane would lose the
history with the process): the server stops (its channel sessions get 4001
"reconnect"), a publication arrives while it is down (another node's,
written to Redis directly), one tab sends a message meanwhile (wsskit.js
keeps it and sends it on the new connection with the same idempotency key),
and the server starts again on the same port. Both tabs must then show
every message once, in the same order.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from tests.browser_app.chat import chat_texts
from tests.channels.redis_server import RedisServer
from tests.serve_process import ServeProcess
from wsskit.channels.backplanes.base import Retention, backplane_from_url

from .conftest import launch, screenshot_path, trusting_home

TIMEOUT = 45_000
TOKEN = "dashboard-token-for-tests-0002"


def _serve(tmp_path: Path, redis: RedisServer, port: int | None = None) -> ServeProcess:
    args = ["--backplane", redis.url, "--api-token", TOKEN]
    if port is not None:
        # ServeProcess passes a free port first; a second --port wins.
        args += ["--port", str(port)]
    process = ServeProcess(tmp_path, *args)
    if port is not None:
        process.port = port
    return process


async def _wait_for_messages(page: Any, count: int) -> None:
    await page.wait_for_function(
        "n => document.querySelectorAll('#messages li:not(.note) .text').length >= n",
        arg=count,
        timeout=TIMEOUT,
    )


async def test_both_tabs_resume_after_a_restart(tmp_path: Path, redis: RedisServer) -> None:
    server = _serve(tmp_path, redis)
    port = server.port
    browser = None
    try:
        browser = await launch(trusting_home(tmp_path / "browser-home", server.ca_path()))
        alice, bob = await browser.page(), await browser.page()
        for page, name in ((alice, "alice"), (bob, "bob")):
            await page.goto(f"https://127.0.0.1:{port}/")
            await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
            await page.fill("#name", name)
            await page.fill("#room", "restart")
            await page.click("#join")
            await page.wait_for_selector("body[data-room='chat:restart']", timeout=TIMEOUT)
        await alice.fill("#text", "before the restart")
        await alice.click("#send")
        for page in (alice, bob):
            await _wait_for_messages(page, 1)

        assert server.stop(signal.SIGTERM) == 0
        for page in (alice, bob):
            await page.wait_for_selector("#chat-status[data-state='reconnecting']", timeout=TIMEOUT)
        await alice.screenshot(
            path=screenshot_path("demo-restart-1-server-down-reconnecting"), full_page=True
        )
        # While the server is down: another node publishes, and alice sends.
        backplane = backplane_from_url(redis.url)
        await backplane.start()
        try:
            await backplane.publish(
                "chat:restart",
                {"name": "other-node", "text": "while the server was down"},
                retention=Retention(),
            )
        finally:
            await backplane.close()
        await alice.fill("#text", "sent while disconnected")
        await alice.click("#send")

        server = _serve(tmp_path, redis, port)
        expected = ["before the restart", "while the server was down", "sent while disconnected"]
        for page in (alice, bob):
            await page.wait_for_selector("#chat-status[data-state='open']", timeout=TIMEOUT)
            await page.wait_for_selector("#chat-log li[data-kind='recovery']", timeout=TIMEOUT)
            await _wait_for_messages(page, len(expected))
        # One live message after the restart, to see the subscription is live.
        await bob.fill("#text", "after the restart")
        await bob.click("#send")
        expected.append("after the restart")
        for page in (alice, bob):
            await _wait_for_messages(page, len(expected))
            assert await chat_texts(page) == expected
            recovery = await page.text_content("#chat-log li[data-kind='recovery']")
            assert recovery is not None and "resumed" in recovery
            offsets = await page.eval_on_selector_all(
                "#messages li", "items => items.map(i => Number(i.dataset.offset))"
            )
            assert offsets == sorted(set(offsets))  # no duplicate, no reordering
        await alice.screenshot(path=screenshot_path("demo-restart-2-alice-resumed"), full_page=True)
        await bob.screenshot(path=screenshot_path("demo-restart-3-bob-resumed"), full_page=True)
    finally:
        if browser is not None:
            await browser.browser.close()
            await browser.playwright.stop()
        if server.proc.poll() is None:
            server.stop()
