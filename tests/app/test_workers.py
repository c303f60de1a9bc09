"""``wsskit serve --workers N``: several real worker processes on one port, and their supervisor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import ConnectionClosed as PeerConnectionClosed

from tests.serve_process import ServeProcess, free_port, http_exchange
from wsskit.app.workers import LISTEN_FD_ENV, reuse_port_spreads, worker_listen

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="--workers needs POSIX (fd passing, signals)")


def healthz(server: ServeProcess, port: int | None = None) -> tuple[int, str | None]:
    """Ask ``/healthz``: the status and the worker that answered."""
    port = server.port if port is None else port
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    status, headers, _ = http_exchange(port, request.encode("ascii"), server.ca_path())
    return status, headers.get("x-wsskit-worker")


def worker_pids(server: ServeProcess) -> dict[str, int]:
    """The last pid the supervisor logged as serving, per worker index."""
    pids: dict[str, int] = {}
    for line in server.lines:
        match = re.search(r"^wsskit: worker (\d+) \(pid (\d+)\) serving", line)
        if match:
            pids[match.group(1)] = int(match.group(2))
    return pids


def seen_workers(server: ServeProcess, wanted: set[str], *, attempts: int = 200) -> set[str]:
    # New connections until every wanted worker has answered (or attempts run out).
    seen: set[str] = set()
    for _ in range(attempts):
        status, worker = healthz(server)
        assert status == 200
        assert worker is not None
        seen.add(worker)
        if wanted <= seen:
            break
    return seen


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path, "--workers", "2", "--drain-window", "1")
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    for pid in worker_pids(server).values():
        # Never leave a worker behind, whatever the test did.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_both_workers_answer_on_one_port(two_workers: ServeProcess) -> None:
    assert any(
        f"serving wss://127.0.0.1:{two_workers.port} with 2 workers" in line for line in two_workers.lines
    )
    assert seen_workers(two_workers, {"0", "1"}) == {"0", "1"}
    pids = worker_pids(two_workers)
    assert set(pids) == {"0", "1"} and pids["0"] != pids["1"]
    # The dev certificate was made once, by the supervisor, before the workers.
    created = [line for line in two_workers.lines if "created a local development CA" in line]
    assert all(line.startswith("wsskit: ") for line in created)


def test_killed_worker_is_restarted_and_the_port_keeps_answering(two_workers: ServeProcess) -> None:
    before = worker_pids(two_workers)
    os.kill(before["0"], signal.SIGKILL)
    two_workers.wait_for("worker 0 (pid")  # "exited with SIGKILL: restarting"
    # Meanwhile the port answers every check.
    for _ in range(5):
        assert healthz(two_workers)[0] == 200
    two_workers.wait_for("worker 0 (pid")  # "... serving" again
    after = worker_pids(two_workers)
    assert after["0"] != before["0"] and after["1"] == before["1"]
    assert any("exited with SIGKILL: restarting" in line for line in two_workers.lines)
    assert seen_workers(two_workers, {"0", "1"}) == {"0", "1"}


async def test_sigterm_drains_every_worker_and_exits_0(two_workers: ServeProcess) -> None:
    context = ssl.create_default_context(cafile=two_workers.ca_path())
    uri = f"wss://127.0.0.1:{two_workers.port}/echo"
    clients = [await peer_connect(uri, ssl=context) for _ in range(6)]
    try:
        for ws in clients:
            await ws.send("x")
            assert await ws.recv() == "x"
        code = asyncio.get_running_loop().run_in_executor(None, two_workers.stop, signal.SIGTERM)
        codes = []
        for ws in clients:
            with pytest.raises(PeerConnectionClosed) as info:
                await ws.recv()
            codes.append(None if info.value.rcvd is None else info.value.rcvd.code)
        assert await code == 0
    finally:
        for ws in clients:
            await ws.close()
    assert codes == [1001] * 6
    assert any("all workers exited (0, 0)" in line for line in two_workers.lines)
    for pid in worker_pids(two_workers).values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_that_cannot_start_fails_the_command(tmp_path: Path) -> None:
    # The port is taken by a socket without SO_REUSEPORT: no worker can bind.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "wsskit", "serve", "--workers", "2", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WSSKIT_HOME": str(tmp_path / "home")},
        )
    assert result.returncode == 1
    assert "before serving" in result.stderr


def test_port_0_shares_one_socket(tmp_path: Path) -> None:
    # --port 0 cannot use SO_REUSEPORT (each worker would get its own port):
    # the supervisor opens the socket and passes it on.
    server = ServeProcess(tmp_path, "--workers", "2", "--port", "0")
    try:
        line = next(line for line in server.lines if " with 2 workers" in line)
        assert "one shared listening socket" in line
        match = re.search(r"wss://127\.0\.0\.1:(\d+)", line)
        assert match is not None
        server.port = int(match.group(1))
        assert seen_workers(server, {"0", "1"}) == {"0", "1"}
    finally:
        assert server.stop() == 0


def test_reuse_port_on_linux_only() -> None:
    assert reuse_port_spreads() == sys.platform.startswith("linux")


def test_worker_listen_reads_the_inherited_socket() -> None:
    assert worker_listen({}) == {"reuse_port": True}
    with socket.create_server(("127.0.0.1", free_port())) as listening:
        fd = os.dup(listening.fileno())
        options = worker_listen({LISTEN_FD_ENV: str(fd)})
        with options["sock"] as inherited:
            assert inherited.getsockname() == listening.getsockname()


def test_crash_loop_backs_off(tmp_path: Path) -> None:
    # A worker killed again as soon as it serves: the restarts slow down.
    server = ServeProcess(tmp_path, "--workers", "2")
    try:
        delays = []
        for _ in range(3):
            os.kill(worker_pids(server)["0"], signal.SIGKILL)
            line = server.wait_for("restarting in ")
            delays.append(float(re.findall(r"restarting in ([\d.]+) s", line)[0]))
            server.wait_for("worker 0 (pid")
        assert delays == sorted(delays) and delays[-1] > delays[0], delays
    finally:
        assert server.stop() == 0


def test_sighup_reaches_every_worker_and_kills_none(two_workers: ServeProcess) -> None:
    pids = worker_pids(two_workers)
    two_workers.proc.send_signal(signal.SIGHUP)
    # With the dev certificate there is nothing to reload; each worker says so.
    seen = {two_workers.wait_for("SIGHUP: no certificate file to reload")[:9] for _ in range(2)}
    assert seen == {"wsskit[0]", "wsskit[1]"}
    assert seen_workers(two_workers, {"0", "1"}) == {"0", "1"}
    assert worker_pids(two_workers) == pids


def test_workers_of_a_killed_supervisor_drain_and_exit(two_workers: ServeProcess) -> None:
    two_workers.proc.kill()
    two_workers.proc.wait()
    # The workers share the supervisor's stderr: it ends once both have exited.
    stderr = two_workers.proc.stderr
    assert stderr is not None
    reader = concurrent.futures.ThreadPoolExecutor(1)
    rest = reader.submit(stderr.readlines)
    try:
        lines = two_workers.lines + [line.rstrip("\n") for line in rest.result(timeout=60)]
    finally:
        reader.shutdown(wait=False)
    assert {line[:9] for line in lines if line.endswith("is gone: draining")} == {"wsskit[0]", "wsskit[1]"}
    assert {line[:9] for line in lines if line.endswith("]: stopped")} == {"wsskit[0]", "wsskit[1]"}
