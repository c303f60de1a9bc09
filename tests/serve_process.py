"""`python -m wsskit serve ...` as a child process, for tests that run the real server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["ServeProcess", "free_port"]


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
        line = self.wait_for("wsskit: serving ")
        if "wss://" in line:
            # The dev certificate's trust lines, or the user's certificate's line.
            self.wait_for("certificate " if "--cert" in args else "trust it with:")

    def wait_for(self, needle: str) -> str:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if needle in line:
                return line
        raise AssertionError(f"server exited before printing {needle!r}: {self.lines}")

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
