"""A private redis-server for the tests: on a free port, without persistence, restartable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket

import pytest

#: How long redis-server may take to say it is ready.
START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The redis-server path; skips the test when missing, fails instead when ``CI=true``."""
    path = shutil.which("redis-server")
    if path is None and os.path.exists("/usr/bin/redis-server"):
        path = "/usr/bin/redis-server"
    if path is None:
        message = "redis-server is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server --port N --save '' --appendonly no`` as a child process."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port if port is not None else free_port()
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it and return once it logged that it accepts connections."""
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._process = process
        assert process.stdout is not None
        try:
            await asyncio.wait_for(self._wait_ready(process.stdout), START_TIMEOUT)
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(self._drain_output(process.stdout))

    @staticmethod
    async def _wait_ready(stream: asyncio.StreamReader) -> None:
        log: list[bytes] = []
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError(b"".join(log).decode(errors="replace") or "redis-server exited")
            log.append(line)
            if b"Ready to accept connections" in line:
                return

    @staticmethod
    async def _drain_output(stream: asyncio.StreamReader) -> None:
        # Keep reading so the server never blocks on a full pipe.
        while await stream.readline():
            pass

    async def stop(self) -> None:
        """Kill it (nothing is saved) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    async def restart(self) -> None:
        """Stop and start again on the same port: every key is lost."""
        await self.stop()
        await self.start()
