"""``wsskit serve --workers N``: N worker processes serving one port, and their supervisor.

One Python process runs on one core; N workers use N. Each worker is a whole
``wsskit serve`` (same options, same config file, same backplane), started by
the supervisor as a child process ``python -m wsskit serve ... --worker-of
<supervisor pid>`` (a fresh interpreter, nothing inherited but the listening
socket: simpler to reason about than ``fork`` after an event loop started).

How they share the port:

- Linux: every worker binds the port itself with ``SO_REUSEPORT``; the
  kernel spreads new connections evenly over the listening workers.
- Elsewhere (macOS and the BSDs, whose ``SO_REUSEPORT`` does not spread
  connections), and with ``--port 0``: the supervisor opens one listening
  socket and passes it to every worker (``WSSKIT_LISTEN_FD``); the workers
  accept from the same queue. Windows is not supported (no fd passing).

Each worker gets ``WSSKIT_WORKER=<index>`` (0, 1, ...) in its environment:
its log lines start with ``wsskit[<index>]:``, its ``/healthz`` and
``/readyz`` answers carry ``X-Wsskit-Worker``, its metrics are labelled.

The supervisor:

- creates the development certificate (if one is used) before any worker
  starts, so that workers never race to create it;
- prints ``serving ...`` once every worker is serving; a worker that exits
  before it serves makes the supervisor stop the others and exit 1;
- restarts a worker that dies (crash, ``kill -9``) after a backoff that
  doubles while it keeps dying young (0.5 s up to 30 s), and never more
  than ``restarts_per_minute`` restarts in all per minute (a crash loop
  waits instead of spinning);
- on SIGTERM or SIGINT sends SIGTERM to every worker (each drains, see
  :mod:`wsskit.app.drain`) and exits once all have exited: 0 when all
  exited 0; a second signal is forwarded too (the workers hurry);
- forwards SIGHUP (certificate reload).

A worker whose supervisor disappears (``kill -9`` of the supervisor) drains
and exits by itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from .config import ServeConfig
from .health import WORKER_ENV
from .server import LISTEN_BACKLOG, _ssl_context, run

__all__ = [
    "LISTEN_FD_ENV",
    "READY_FD_ENV",
    "Supervisor",
    "reuse_port_spreads",
    "serve_worker",
    "supervise",
    "worker_listen",
]

log = logging.getLogger("wsskit.app")

#: The inherited listening socket's file descriptor, when the supervisor shares one.
LISTEN_FD_ENV = "WSSKIT_LISTEN_FD"
#: The pipe a worker writes one byte to once it serves.
READY_FD_ENV = "WSSKIT_READY_FD"

# Backoff of a worker that keeps dying young, and what "young" means.
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 30.0
# How long the supervisor waits past the drain timeout before SIGKILL.
_KILL_GRACE = 10.0
# How often a worker checks that its supervisor is still there.
_PARENT_CHECK = 1.0


def reuse_port_spreads() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections over the sockets sharing a port (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


# -- the worker side -------------------------------------------------------------------


def worker_listen(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``listen`` options of a worker: the inherited socket, or ``reuse_port``.

    Raises :class:`ValueError` when ``WSSKIT_LISTEN_FD`` is not a number.
    """
    environ = dict(os.environ) if environ is None else environ
    fd = environ.get(LISTEN_FD_ENV)
    if fd is None:
        return {"reuse_port": True}
    return {"sock": socket.socket(fileno=int(fd))}


async def serve_worker(config: ServeConfig, supervisor: int) -> None:
    """Run one worker of ``supervisor`` (its pid) until it is told to stop, then drain.

    Raises what :func:`wsskit.app.server.run` raises (an address in use: OSError).
    """
    loop = asyncio.get_running_loop()
    # The supervisor forwards SIGHUP; without a certificate file to reload
    # (the dev certificate) it must not kill the worker, as it would by default.
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: no certificate file to reload")
    watch = loop.create_task(_watch_supervisor(supervisor))
    try:
        await run(config, listen=worker_listen(), started=_tell_supervisor)
    finally:
        watch.cancel()


def _tell_supervisor() -> None:
    fd = os.environ.get(READY_FD_ENV)
    if fd is None:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), b"r")
        os.close(int(fd))


async def _watch_supervisor(supervisor: int) -> None:
    # Orphaned (the supervisor was killed): drain as on SIGTERM.
    while os.getppid() == supervisor:
        await asyncio.sleep(_PARENT_CHECK)
    log.warning("the supervisor (pid %d) is gone: draining", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


# -- the supervisor side ---------------------------------------------------------------


def supervise(config: ServeConfig, argv: Sequence[str]) -> int:
    """Run ``config.workers`` workers of ``wsskit <argv>`` until SIGTERM or SIGINT; the exit status.

    ``argv`` is the command line of ``wsskit`` after the program name
    (``serve --workers 4 ...``). Raises :class:`OSError` when the shared
    socket cannot be opened (address in use) and what building the TLS
    context raises (missing certificate files), and :class:`ValueError` on
    Windows (no file descriptor passing, no POSIX signals).
    """
    if sys.platform == "win32":
        raise ValueError("--workers needs a POSIX system (Linux, macOS, BSD); run one process per port")
    return asyncio.run(Supervisor(config, argv).run())


class Supervisor:
    """The parent of the workers: starts, watches, restarts and stops them."""

    def __init__(
        self, config: ServeConfig, argv: Sequence[str], *, restarts_per_minute: int | None = None
    ) -> None:
        self.config = config
        self.argv = list(argv)
        self.count = config.workers
        #: Restarts allowed per minute, over all workers.
        self.restarts_per_minute = restarts_per_minute or max(10, 5 * self.count)
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self._stop: asyncio.Event | None = None
        self._signals = 0
        self._sock: socket.socket | None = None

    async def run(self) -> int:
        """Start the workers, keep them running until a signal, stop them; the exit status."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        # The dev certificate is made here, once, before any worker looks for it.
        _, trust_lines = _ssl_context(self.config)
        if reuse_port_spreads() and self.config.port != 0:
            how = "SO_REUSEPORT"
        else:
            self._sock = socket.create_server((self.config.host, self.config.port), backlog=LISTEN_BACKLOG)
            how = "one shared listening socket"
        ready = [loop.create_future() for _ in range(self.count)]
        slots = [loop.create_task(self._keep(index, ready[index])) for index in range(self.count)]
        try:
            started = await self._wait_started(ready)
            if started:
                log.info(
                    "serving %s with %d workers (%s; echo at /echo, channels at /channels over %s)",
                    self._url(),
                    self.count,
                    how,
                    self.config.backplane,
                )
                for line in trust_lines:
                    log.info("%s", line)
                await self._stop.wait()
            code = await self._stop_all(slots)
            # A worker that failed to start fails the whole command.
            return 1 if not started and not self._signals else code
        finally:
            if self._sock is not None:
                self._sock.close()

    def _url(self) -> str:
        port = self.config.port if self._sock is None else self._sock.getsockname()[1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{self.config.scheme}://{host}:{port}"

    async def _wait_started(self, ready: list[asyncio.Future[bool]]) -> bool:
        # True once every worker serves; False when one failed first, or a signal came.
        assert self._stop is not None
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = {*ready, stop}
            while not all(future.done() for future in ready):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return False
                if any(future.done() and not future.result() for future in ready):
                    log.error("a worker exited before it served: stopping")
                    return False
            return True
        finally:
            stop.cancel()

    def _on_stop(self, sig: int) -> None:
        assert self._stop is not None
        self._signals += 1
        name = signal.Signals(sig).name
        if self._signals == 1:
            log.info("%s received: draining %d workers", name, len(self.processes))
        else:
            log.warning("%s received again: the workers close everything now", name)
        self._stop.set()
        self._forward(signal.SIGTERM)

    def _forward(self, sig: int) -> None:
        for process in list(self.processes.values()):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def _stop_all(self, slots: list[asyncio.Task[int]]) -> int:
        # Every worker gets one SIGTERM: from _on_stop, or here after a failed
        # start (a second one would make the workers hurry).
        assert self._stop is not None
        if not self._signals:
            self._stop.set()
            self._forward(signal.SIGTERM)
        _, pending = await asyncio.wait(slots, timeout=self.config.drain_timeout + _KILL_GRACE)
        if pending:
            log.warning("%d workers still running after the drain timeout: killing them", len(pending))
            self._forward(signal.SIGKILL)
            await asyncio.wait(pending)
        codes = [slot.result() for slot in slots]
        log.info("all workers exited (%s)", ", ".join(str(code) for code in codes))
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, index: int, ready: asyncio.Future[bool]) -> int:
        # One worker slot: start it, restart it when it dies; its last exit code.
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            process, serving = await self._spawn(index)
            if self._stop.is_set() and process.returncode is None:
                process.send_signal(signal.SIGTERM)  # started while the others were told to stop
            started = loop.time()
            if await serving:
                log.info("worker %d (pid %d) serving", index, process.pid)
                if not ready.done():
                    ready.set_result(True)
            code = await process.wait()
            self.processes.pop(index, None)
            if self._stop.is_set():
                log.info("worker %d (pid %d) exited with %s", index, process.pid, _describe(code))
                return code
            if not ready.done():
                log.error(
                    "worker %d (pid %d) exited with %s before serving", index, process.pid, _describe(code)
                )
                ready.set_result(False)
                return code
            failures = 1 if loop.time() - started >= _HEALTHY_AFTER else failures + 1
            delay = self._restart_delay(failures)
            log.warning(
                "worker %d (pid %d) exited with %s: restarting in %.1f s",
                index,
                process.pid,
                _describe(code),
                delay,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return code
            self._restarts.append(loop.time())

    def _restart_delay(self, failures: int) -> float:
        # The backoff of this worker, stretched so that the restarts of the
        # last minute, all workers together, stay under the cap.
        now = asyncio.get_running_loop().time()
        while self._restarts and self._restarts[0] <= now - 60:
            self._restarts.popleft()
        delay: float = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2.0 ** (failures - 1))
        if len(self._restarts) >= self.restarts_per_minute:
            wait = self._restarts[0] + 60 - now
            log.warning("%d worker restarts in the last minute: waiting %.0f s", len(self._restarts), wait)
            delay = max(delay, wait)
        return delay

    async def _spawn(self, index: int) -> tuple[asyncio.subprocess.Process, asyncio.Future[bool]]:
        # A worker and a future that turns True once it serves (False if it never does).
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        env = {**os.environ, WORKER_ENV: str(index), READY_FD_ENV: str(write_end)}
        fds = [write_end]
        if self._sock is not None:
            env[LISTEN_FD_ENV] = str(self._sock.fileno())
            fds.append(self._sock.fileno())
        command = [sys.executable, "-m", "wsskit", *self.argv, "--worker-of", str(os.getpid())]
        if self._sock is not None:
            # The port really bound (--port 0 picks one): the worker's URL and
            # allowed origin name it. The last --port given wins.
            command += ["--port", str(self._sock.getsockname()[1])]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                env=env,
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches the
                # supervisor only, which forwards one SIGTERM.
                start_new_session=True,
            )
        finally:
            os.close(write_end)
        self.processes[index] = process
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb", buffering=0)
        )

        async def serving() -> bool:
            try:
                return await reader.read(1) == b"r"
            finally:
                transport.close()

        return process, asyncio.ensure_future(serving())


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"code {code}"
