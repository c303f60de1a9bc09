"""The dashboard in a real Chromium: live data with an API token, nothing without."""

from __future__ import annotations

from tests.serve_process import ServeProcess

from .conftest import Browser, screenshot_path

TIMEOUT = 30_000


async def test_dashboard_shows_data_with_a_token(
    browser: Browser, server: ServeProcess, api_token: str
) -> None:
    # Some traffic first, so the charts have something to show.
    demo = await browser.page()
    await demo.goto(f"https://127.0.0.1:{server.port}/")
    await demo.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await demo.click("#join")
    await demo.wait_for_selector("body[data-room='chat:lobby']", timeout=TIMEOUT)
    page = await browser.page()
    response = await page.goto(f"https://127.0.0.1:{server.port}/dashboard")
    assert response is not None and response.ok
    assert "frame-ancestors 'none'" in (await response.all_headers())["content-security-policy"]
    await page.fill("#token", api_token)
    await page.click("#token-form button")
    await page.wait_for_selector("#dash-status[data-state='open']", timeout=TIMEOUT)
    # Several snapshots arrive, one per second; the node's row shows the
    # demo tab's chat connection and its TLS version.
    await page.wait_for_function("() => Number(document.body.dataset.updates || 0) >= 3", timeout=TIMEOUT)
    rows = await page.eval_on_selector_all(
        "#nodes tbody tr", "rows => rows.map(row => Array.from(row.cells).map(cell => cell.textContent))"
    )
    assert len(rows) == 1
    node, connections, tls_versions, channels, subscribers = rows[0][:5]
    assert "worker 0" in node
    # The demo tab's channels connection and this dashboard's own.
    assert int(connections) >= 2
    assert "TLSv1.3" in tls_versions or "TLSv1.2" in tls_versions
    assert int(channels) >= 1 and int(subscribers) >= 1
    channel_names = await page.eval_on_selector_all(
        "#channels tbody tr td:nth-child(2)", "c => c.map(e => e.textContent)"
    )
    assert "chat:lobby" in channel_names
    await page.screenshot(path=screenshot_path("dashboard-live-with-token"), full_page=True)


async def test_dashboard_refuses_a_wrong_token(browser: Browser, server: ServeProcess) -> None:
    page = await browser.page()
    await page.goto(f"https://127.0.0.1:{server.port}/dashboard")
    await page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT)
    await page.fill("#token", "not-the-right-token-at-all")
    await page.click("#token-form button")
    await page.wait_for_selector("#dash-status[data-state='refused']", timeout=TIMEOUT)
    status = await page.text_content("#dash-status")
    assert status is not None and "unauthorized" in status and "1008" in status
    assert await page.eval_on_selector_all("#nodes tbody tr", "rows => rows.length") == 0
    assert await page.evaluate("() => document.body.dataset.updates") is None
    await page.screenshot(path=screenshot_path("dashboard-refused-wrong-token"), full_page=True)
