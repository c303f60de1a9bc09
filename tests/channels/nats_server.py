"""A private ``nats-server -js`` for tests: on a free port, with its own store, restartable.

Readiness is the server's own "Server is ready" log line, read by a thread that
also drains the log so the server never blocks on a full pipe.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

__all__ = ["NATS_SERVER", "NatsServer", "nats_server_binary"]

#: Where the test machine keeps the server (Debian's package); PATH is tried next.
NATS_SERVER = "/usr/sbin/nats-server"
#: Seconds the server may take to start or stop.
START_TIMEOUT = 20.0


def nats_server_binary() -> str:
    """The nats-server to run; skips the test without one (fails with ``CI=true``)."""
    binary = NATS_SERVER if os.access(NATS_SERVER, os.X_OK) else shutil.which("nats-server")
    if binary is None:
        message = "nats-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: a missing service is a failure)")
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One nats-server with JetStream on 127.0.0.1, storing under ``store``."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary = binary
        self.store = store
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Start the server; return once it accepts clients."""
        if self._process is not None:
            return
        command = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ready = threading.Event()

        def drain() -> None:
            assert process.stderr is not None
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.log.append(line)
                if "Server is ready" in line:
                    ready.set()
            ready.set()  # exited: let start() find out

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or process.poll() is not None:
            process.kill()
            process.wait()
            raise RuntimeError("nats-server did not start:\n" + "\n".join(self.log[-20:]))
        self._process = process

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart_without_data(self) -> None:
        """Stop, delete the JetStream store, start again: a broker that lost its history."""
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)
        self.start()
