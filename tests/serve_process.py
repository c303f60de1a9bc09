"""`python -m wsskit serve ...` as a child process, for tests that run the real server."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["ServeProcess", "free_port", "http_exchange"]


#: How long a server may take to print what a test waits for (a loaded CI machine included).
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a race with other programs is possible, and rare)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """`python -m wsskit serve ...` with its stderr collected line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        env = {**os.environ, "WSSKIT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsskit", "serve", "--port", str(self.port), *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        # "wsskit: serving ..." (a supervisor's comes once all its workers'
        # "wsskit[N]: serving" lines did); a process started as worker N says
        # "wsskit[N]: serving ...".
        worker = env.get("WSSKIT_WORKER")
        line = self.wait_for("wsskit: serving " if worker is None else f"wsskit[{worker}]: serving ")
        if "wss://" in line:
            # The dev certificate's trust lines, or the user's certificate's line.
            self.wait_for("certificate " if "--cert" in args else "trust it with:")

    def wait_for(self, needle: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """Read log lines until one holds ``needle``; return it.

        A server that neither prints it nor exits within ``timeout`` seconds
        is killed (its stderr then ends), so a test fails instead of hanging.
        """
        assert self.proc.stderr is not None
        watchdog = threading.Timer(timeout, self.proc.kill)
        watchdog.start()
        try:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if needle in line:
                    return line
        finally:
            watchdog.cancel()
        raise AssertionError(
            f"server exited (or was killed after {timeout} s) before printing {needle!r}: {self.lines}"
        )

    def ca_path(self) -> str:
        for line in self.lines:
            match = re.search(r"--cacert (\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no CA path printed: {self.lines}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.proc.stderr is not None
        self.lines.extend(line.rstrip("\n") for line in self.proc.stderr)
        return code


def http_exchange(port: int, data: bytes, ca_path: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send the raw request ``data`` to 127.0.0.1:``port`` (over TLS trusting ``ca_path``, when
    given) and read until the server closes; return the status, headers (lowercase names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        stream = raw
        if ca_path is not None:
            stream = ssl.create_default_context(cafile=ca_path).wrap_socket(raw, server_hostname="127.0.0.1")
        with stream:
            stream.sendall(data)
            chunks = []
            while chunk := stream.recv(65536):
                chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body
