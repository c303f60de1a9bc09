"""The demo page in a real Chromium: https that the browser trusts, wss, chat, raw panel, XSS."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.browser_app.chat import chat_texts
from tests.serve_process import ServeProcess

from .conftest import Browser, screenshot_path

# Generous: two cores shared with other test runs.
TIMEOUT = 30_000


def _url(server: ServeProcess, path: str = "/") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


async def _join(page: Any, name: str, room: str) -> None:
    await page.fill("#name", name)
    await page.fill("#room", room)
    await page.click("#join")
    await page.wait_for_selector("#chat-status[data-state='open']", timeout=TIMEOUT)
    await page.wait_for_selector(f"body[data-room='chat:{room}']", timeout=TIMEOUT)


async def _say(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def _wait_text(page: Any, text: str) -> None:
    await page.wait_for_function(
        "text => Array.from(document.querySelectorAll('#messages .text')).some(e => e.textContent === text)",
        arg=text,
        timeout=TIMEOUT,
    )


async def test_page_loads_over_https_with_security_headers(browser: Browser, server: ServeProcess) -> None:
    page = await browser.page()
    response = await page.goto(_url(server))
    assert response is not None and response.ok
    # The browser verified the dev certificate: no error page, and it says so.
    security = await response.security_details()
    assert security is not None and security["protocol"] in ("TLS 1.3", "TLS 1.2")
    headers = await response.all_headers()
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["strict-transport-security"].startswith("max-age=")
    await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await page.screenshot(path=screenshot_path("demo-page-loaded"), full_page=True)


async def test_raw_panel_logs_open_message_close(browser: Browser, server: ServeProcess) -> None:
    page = await browser.page()
    await page.goto(_url(server))
    await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await page.click("#raw-open")
    await page.wait_for_selector("#raw-log li[data-kind='open']", timeout=TIMEOUT)
    await page.fill("#raw-text", "hello over wss")
    await page.click("#raw-send")
    await page.wait_for_selector("#raw-log li[data-kind='message']", timeout=TIMEOUT)
    message = await page.text_content("#raw-log li[data-kind='message']")
    assert message is not None and message.endswith("message: hello over wss")
    await page.click("#raw-close")
    await page.wait_for_selector("#raw-log li[data-kind='close']", timeout=TIMEOUT)
    close = await page.text_content("#raw-log li[data-kind='close']")
    assert close is not None and "code 1000" in close and "(clean)" in close
    kinds = await page.eval_on_selector_all("#raw-log li", "items => items.map(item => item.dataset.kind)")
    assert kinds == ["open", "sent", "message", "close"]
    await page.screenshot(path=screenshot_path("demo-raw-panel-open-message-close"), full_page=True)


async def test_two_tabs_chat(browser: Browser, server: ServeProcess) -> None:
    alice, bob = await browser.page(), await browser.page()
    for page in (alice, bob):
        await page.goto(_url(server))
        await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await _join(alice, "alice", "tabs")
    await _join(bob, "bob", "tabs")
    await _say(alice, "hi bob")
    await _wait_text(bob, "hi bob")
    await _say(bob, "hi alice")
    await _wait_text(alice, "hi alice")
    assert await chat_texts(alice) == ["hi bob", "hi alice"]
    assert await chat_texts(bob) == ["hi bob", "hi alice"]
    # Both tabs are in the room's presence list.
    await alice.wait_for_function(
        "() => document.getElementById('presence-count').textContent === '2'", timeout=TIMEOUT
    )
    await alice.screenshot(path=screenshot_path("demo-chat-two-tabs-alice"), full_page=True)
    await bob.screenshot(path=screenshot_path("demo-chat-two-tabs-bob"), full_page=True)


XSS_PAYLOADS = [
    "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">",
    "<script>window.__xss = 'script'; alert('script')</script>",
    "<svg onload=\"window.__xss = 'svg'\"></svg>",
]


async def test_xss_payloads_render_as_text(browser: Browser, server: ServeProcess) -> None:
    attacker, victim = await browser.page(), await browser.page()
    for page in (attacker, victim):
        await page.goto(_url(server))
        await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    # The name field takes 40 characters: a payload that fits.
    evil_name = '<img src=x onerror="window.__xss=1">'
    assert len(evil_name) <= 40
    await _join(victim, "victim", "xss")
    await _join(attacker, evil_name, "xss")
    for payload in XSS_PAYLOADS:
        await _say(attacker, payload)
    for payload in XSS_PAYLOADS:
        await _wait_text(victim, payload)
    # Shown as the characters sent, in the message and in the name ...
    assert await chat_texts(victim) == XSS_PAYLOADS
    names = await victim.eval_on_selector_all(
        "#messages .who", "items => items.map(item => item.textContent)"
    )
    assert set(names) == {evil_name}
    # ... and nothing of it became an element or ran.
    assert (
        await victim.eval_on_selector_all("#messages img, #messages script, #messages svg", "e => e.length")
        == 0
    )
    await asyncio.sleep(0.5)  # let any handler that was wrongly created fire
    assert await victim.evaluate("() => window.__xss") is None
    assert await attacker.evaluate("() => window.__xss") is None
    assert browser.dialogs == []
    await victim.screenshot(path=screenshot_path("demo-xss-payloads-shown-as-text"), full_page=True)


async def test_page_refuses_inline_script(browser: Browser, server: ServeProcess) -> None:
    # The CSP is enforced: a script element injected with inline code does not run.
    page = await browser.page()
    await page.goto(_url(server))
    await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; "
        "document.body.appendChild(s); }"
    )
    assert await page.evaluate("() => window.__inline") is None
    # Chromium reports the refusal on the console (delivered asynchronously).
    for _ in range(100):
        if any("Content Security Policy" in line for line in browser.console):
            break
        await asyncio.sleep(0.1)
    assert any("Content Security Policy" in line for line in browser.console), browser.console
