"""Choosing the event loop of wsskit's own programs: uvloop when installed, asyncio on demand."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import ServeProcess
from wsskit.asyncio import loops
from wsskit.sync.loop import LoopThread

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed (wsskit[speed])")


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_takes_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSSKIT_LOOP", raising=False)
    assert loops.loop_name() == ("uvloop" if HAVE_UVLOOP else "asyncio")
    assert loops.loop_name("auto") == loops.loop_name()


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_uvloop(name: str, *args: Any) -> Any:
        return None if name == "uvloop" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_uvloop)
    assert loops.loop_name("auto") == "asyncio"
    with pytest.raises(ValueError, match=r"pip install 'wsskit\[speed\]'"):
        loops.loop_name("uvloop")


def test_the_environment_chooses_when_no_argument_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSSKIT_LOOP", "asyncio")
    assert loops.loop_name() == "asyncio"
    assert loops.loop_name("auto") == ("uvloop" if HAVE_UVLOOP else "asyncio")
    monkeypatch.setenv("WSSKIT_LOOP", "tokio")
    with pytest.raises(ValueError, match="unknown event loop 'tokio'"):
        loops.loop_name()


def test_run_uses_the_standard_loop_on_demand() -> None:
    assert loops.run(_loop_module(), loop="asyncio").startswith("asyncio")


@needs_uvloop
def test_run_and_new_event_loop_use_uvloop() -> None:
    assert loops.run(_loop_module(), loop="uvloop").startswith("uvloop")
    loop = loops.new_event_loop("uvloop")
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_a_refused_choice_closes_the_coroutine() -> None:
    coroutine = _loop_module()
    with pytest.raises(ValueError):
        loops.run(coroutine, loop="nope")
    # Closed: awaiting it again is an error, and no "never awaited" warning comes.
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        coroutine.send(None)


def test_the_blocking_client_thread_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSSKIT_LOOP", "asyncio")
    thread = LoopThread()
    try:
        assert thread.run(_loop_module()).startswith("asyncio")
    finally:
        thread.stop()


@needs_uvloop
@pytest.mark.parametrize(("option", "expected"), [((), "uvloop"), (("--loop", "asyncio"), "asyncio")])
def test_wsskit_serve_says_which_loop_it_runs(tmp_path: Path, option: tuple[str, ...], expected: str) -> None:
    server = ServeProcess(tmp_path, "--no-tls", *option)
    try:
        assert any(line.endswith(f"event loop: {expected}") for line in server.lines), server.lines
    finally:
        assert server.stop(signal.SIGTERM) == 0


@needs_uvloop
def test_ping_latency_is_not_rounded_to_zero_on_uvloop() -> None:
    # uvloop's loop.time() counts whole milliseconds: a loopback round trip
    # timed with it would read 0.0.
    from wsskit.asyncio import connect, serve

    async def main() -> list[float]:
        async def handler(ws: Any) -> None:
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                return [await ws.ping() for _ in range(5)]

    latencies = loops.run(main(), loop="uvloop")
    assert all(latency > 0 for latency in latencies), latencies
