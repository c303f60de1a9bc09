"""An asyncio event loop in a background thread, for code that does not run one.

The blocking client (:mod:`wsskit.sync.client`) and the browser-style
:class:`wsskit.browser.WebSocket` used from a plain script both drive the
asyncio connection (:mod:`wsskit.asyncio`) on such a loop: the protocol, TLS,
keepalive and timeouts stay in one implementation, and the calling thread
only waits on :class:`concurrent.futures.Future` objects (no polling).

:func:`shared_loop` returns the one loop thread of the process, started on
first use. One thread serves every connection, as one event loop serves every
socket of a browser page: a thousand connections cost one thread, and the
callbacks of every :class:`~wsskit.browser.WebSocket` run one at a time on
it. The thread is a daemon, so it never keeps a finished program alive; at
interpreter exit an :mod:`atexit` hook stops the loop and joins the thread
(connections still open then are dropped without a Close frame: close them
first). A child made by :func:`os.fork` gets a new loop thread of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..asyncio import loops
from ..exceptions import InvalidState

__all__ = ["LoopThread", "shared_loop"]

T = TypeVar("T")

# How long the exit hook waits for the loop to wind down before giving up on
# the (daemon) thread.
_EXIT_JOIN_TIMEOUT = 5.0


class LoopThread:
    """An asyncio event loop running forever in a daemon thread of its own.

    :meth:`submit` schedules a coroutine on it from any thread; :meth:`run`
    does the same and waits for the result. :meth:`stop` cancels what is
    still running, closes the loop and joins the thread.
    """

    def __init__(self, name: str = "wsskit-loop") -> None:
        # uvloop when installed (or as $WSSKIT_LOOP says): see wsskit.asyncio.loops.
        self.loop = loops.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def thread(self) -> threading.Thread:
        """The thread that runs the loop."""
        return self._thread

    def in_loop_thread(self) -> bool:
        """Return whether the caller runs on the loop's own thread."""
        return threading.get_ident() == self._thread.ident

    def is_running(self) -> bool:
        """Return whether the loop still runs (False once :meth:`stop` was called)."""
        return self._thread.is_alive() and not self.loop.is_closed() and self.loop.is_running()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the loop; return a future for its result.

        Safe from any thread. Raises :class:`~wsskit.exceptions.InvalidState`
        once the loop is stopped.
        """
        if not self.is_running():
            coroutine.close()
            raise InvalidState("the wsskit event loop thread is stopped")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or exception).

        Raises :class:`~wsskit.exceptions.InvalidState` when called on the
        loop's thread itself (from a :class:`~wsskit.browser.WebSocket`
        listener, say): waiting there would block the loop that has to do the
        work, for ever. If the wait is interrupted (``KeyboardInterrupt``),
        the coroutine is cancelled.
        """
        try:
            self.check_other_thread()
        except InvalidState:
            coroutine.close()
            raise
        future = self.submit(coroutine)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def check_other_thread(self) -> None:
        """Raise :class:`~wsskit.exceptions.InvalidState` when called on the loop's thread.

        Blocking calls check first: waiting on the loop's thread for work
        that the same loop has to do would wait for ever.
        """
        if self.in_loop_thread():
            raise InvalidState(
                "a blocking wsskit call on the event loop thread would wait for ever; "
                "call it from another thread, or use the asyncio API there"
            )

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop as soon as possible; safe from any thread."""
        if self.in_loop_thread():
            self.loop.call_soon(callback, *args)
        else:
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float | None = None) -> None:
        """Cancel the loop's tasks, stop and close it, and join its thread.

        Does nothing more when already stopped. Raises
        :class:`~wsskit.exceptions.InvalidState` on the loop's own thread.
        """
        if self.in_loop_thread():
            raise InvalidState("the event loop thread cannot stop itself and wait for its end")
        if self._thread.is_alive() and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            try:
                # What is left (connections still open) is cancelled and
                # given a chance to run its cleanup, as asyncio.run() does.
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


_shared: LoopThread | None = None
_shared_pid = 0
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """Return the process's shared loop thread, starting it on first use."""
    global _shared, _shared_pid
    shared = _shared
    if shared is not None and _shared_pid == os.getpid() and shared.is_running():
        return shared
    with _shared_lock:
        shared = _shared
        if shared is None or _shared_pid != os.getpid() or not shared.is_running():
            # A forked child inherits the object but not the thread: start anew.
            shared = LoopThread("wsskit-loop")
            _shared, _shared_pid = shared, os.getpid()
        return shared


@atexit.register
def _stop_shared_loop() -> None:
    shared = _shared
    if shared is not None and _shared_pid == os.getpid() and not shared.in_loop_thread():
        shared.stop(_EXIT_JOIN_TIMEOUT)
