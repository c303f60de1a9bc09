"""The event loop thread behind the blocking client and the browser-style WebSocket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from wsskit.exceptions import InvalidState
from wsskit.sync.loop import LoopThread, shared_loop

TIMEOUT = 10


def test_run_returns_results_and_raises_exceptions() -> None:
    runner = LoopThread("test-loop")
    try:

        async def where() -> str:
            await asyncio.sleep(0)
            return threading.current_thread().name

        async def fail() -> None:
            raise KeyError("from the loop")

        assert runner.run(where()) == "test-loop"
        with pytest.raises(KeyError, match="from the loop"):
            runner.run(fail())
        assert runner.thread.daemon
        assert runner.is_running()
    finally:
        runner.stop(TIMEOUT)
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()
    assert not runner.is_running()


def test_stop_cancels_what_still_runs() -> None:
    runner = LoopThread("test-loop")
    started = threading.Event()
    cancelled = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = runner.submit(forever())
    assert started.wait(TIMEOUT)
    runner.stop(TIMEOUT)
    assert cancelled.is_set()
    assert future.cancelled()
    assert not runner.thread.is_alive()
    coroutine = forever()
    with pytest.raises(InvalidState):
        runner.submit(coroutine)


def test_blocking_on_the_loop_thread_raises_instead_of_hanging() -> None:
    runner = LoopThread("test-loop")
    try:
        outcome: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

        async def nothing() -> None:
            pass

        def on_loop() -> None:
            try:
                runner.run(nothing())
            except BaseException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        runner.call_soon(on_loop)
        assert isinstance(outcome.result(TIMEOUT), InvalidState)
    finally:
        runner.stop(TIMEOUT)


def test_shared_loop_is_one_per_process() -> None:
    first = shared_loop()
    assert shared_loop() is first
    assert first.thread.name == "wsskit-loop" and first.thread.daemon
    assert first.is_running()
