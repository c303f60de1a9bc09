"""Fixtures of the browser tests: a real headless Chromium that trusts the dev CA.

Chromium is Debian's ``chromium`` (``apt-get install chromium libnss3-tools``),
driven by Playwright's Python API with ``executable_path``: Playwright's own
browser download is never used. The browser is not told to ignore
certificate errors: it gets a private ``HOME`` whose NSS database
(``$HOME/.pki/nssdb``) trusts the dev CA of the server under test, which is
how Chromium on Linux reads its trust store.

Without chromium, certutil or Playwright the tests are skipped, and fail
instead under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import ServeProcess

#: Where screenshots go (gitignored); kept after the run as test artifacts.
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

#: Where the system's Chromium lives (Debian's package).
CHROMIUM = "/usr/bin/chromium"


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def chromium_path() -> str:
    """The Chromium binary; skips (fails under CI=true) when it is missing."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        _missing("chromium is not installed (apt-get install chromium libnss3-tools)")
    assert path is not None
    return path


def certutil_path() -> str:
    """NSS's certutil; skips (fails under CI=true) when it is missing."""
    path = shutil.which("certutil")
    if path is None:
        _missing("certutil is not installed (apt-get install libnss3-tools)")
    assert path is not None
    return path


def trusting_home(home: Path, ca_pem: str) -> Path:
    """Make ``home`` a HOME whose NSS database trusts ``ca_pem`` for TLS servers; return it."""
    certutil = certutil_path()
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    database = f"sql:{nssdb}"
    subprocess.run([certutil, "-d", database, "-N", "--empty-password"], check=True, capture_output=True)
    # "C,,": a CA trusted to issue server certificates, and nothing else.
    subprocess.run(
        [certutil, "-d", database, "-A", "-t", "C,,", "-n", "wsskit-dev", "-i", ca_pem],
        check=True,
        capture_output=True,
    )
    return home


def screenshot_path(name: str) -> str:
    """Where the screenshot ``name`` goes: ``tests/artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


class Browser:
    """A running Chromium (Playwright's async API) and the HOME it trusts the CA from."""

    def __init__(self, playwright: Any, browser: Any) -> None:
        self.playwright = playwright
        self.browser = browser
        self.dialogs: list[str] = []
        self.console: list[str] = []

    async def page(self) -> Any:
        """A new tab in its own context, recording dialogs (and dismissing them) and console errors."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.set_default_timeout(30_000)
        return page


async def launch(home: Path) -> Browser:
    """Start headless Chromium with ``HOME=home``; skips (fails under CI) without Playwright."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    playwright = await async_playwright().start()
    env = {key: value for key, value in os.environ.items() if key not in ("HOME", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    try:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            env=env,
            # A container has no GPU nor /dev/shm of size.
            args=["--disable-gpu", "--disable-dev-shm-usage"],
            timeout=60_000,
        )
    except BaseException:
        await playwright.stop()
        raise
    return Browser(playwright, browser)


@pytest.fixture
def api_token() -> str:
    return "dashboard-token-for-tests-0001"


@pytest.fixture
def server(tmp_path: Path, api_token: str) -> Any:
    """``wsskit serve`` (memory backplane) with an API token, over the dev CA of tmp_path."""
    process = ServeProcess(tmp_path, "--api-token", api_token)
    yield process
    if process.proc.poll() is None:
        process.stop()


@pytest.fixture
async def browser(tmp_path: Path, server: ServeProcess) -> AsyncIterator[Browser]:
    """Chromium trusting the dev CA of ``server``."""
    home = trusting_home(tmp_path / "browser-home", server.ca_path())
    running = await launch(home)
    try:
        yield running
    finally:
        await running.browser.close()
        await running.playwright.stop()
