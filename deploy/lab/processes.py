"""Child processes on loopback: ``wsskit serve`` nodes, a private Redis, HAProxy, nginx.

Everything runs as the current user, listens on 127.0.0.1 on free ports and
keeps its pid, logs and temporary files in a folder of its own. Each process's
output is read by a thread into :attr:`lines` so that no pipe ever fills up.
Failures to start raise :class:`StartError` with the process's output.
"""

from __future__ import annotations

import contextlib
import csv
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from wsskit.certs import DevCertificates, ensure_dev_certificates

__all__ = [
    "StartError",
    "free_port",
    "wait_for_port",
    "make_certificates",
    "haproxy_bundle",
    "Child",
    "ServeNode",
    "RedisProcess",
    "HAProxy",
    "Nginx",
    "nginx_stream_module",
    "raise_fd_limit",
]

#: How long a process may take to come up (loaded CI machines are slow).
START_TIMEOUT = 30.0


class StartError(RuntimeError):
    """A process did not start, or exited early; the message holds its output."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another program may take it meanwhile; rare)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = START_TIMEOUT, host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts TCP connections; raise :class:`TimeoutError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to the hard one; return the new soft limit.

    Thousands of sockets need thousands of descriptors and the usual soft
    limit is 1024; children (the nodes, HAProxy) inherit the raised limit.
    An unprivileged process may go up to the hard limit (``ulimit -Hn``) only.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return hard if soft == resource.RLIM_INFINITY else soft


def make_certificates(directory: Path) -> DevCertificates:
    """A throwaway dev CA and a leaf for localhost / 127.0.0.1 / ::1 in ``directory``."""
    paths, _ = ensure_dev_certificates(directory)
    return paths


def haproxy_bundle(certificates: DevCertificates, destination: Path) -> Path:
    """The leaf's chain and key in one PEM file, the form HAProxy's ``crt`` reads."""
    destination.write_bytes(certificates.cert.read_bytes() + certificates.key.read_bytes())
    destination.chmod(0o600)
    return destination


class Child:
    """A child process whose merged stdout and stderr are collected line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: bool = False,
        group: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        #: Whether :meth:`send_line` may write to the process's stdin.
        self.stdin = stdin
        #: Whether the process leads a process group of its own, which signals
        #: reach as a whole: nginx's workers outlive a master killed alone.
        self.group = group
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()

    def spawn(self) -> None:
        """Start the process (again, when it ended); raises :class:`OSError`."""
        # Our own argument lists, never a shell.
        self.proc = proc = subprocess.Popen(  # noqa: S603
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=self.group,
        )
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def send_line(self, line: str) -> None:
        """Write one line to the process's stdin; raises :class:`OSError` once it is gone."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str, timeout: float = START_TIMEOUT) -> str:
        """Send ``command`` and return what follows ``"<first word> "`` on the answer line.

        The traffic processes of ``deploy/failover`` answer each command with
        one line ``>> <first word> <answer>``. Raises as :meth:`wait_for_line`.
        """
        mark = len(self.lines)
        self.send_line(command)
        word = ">> " + command.split(" ", 1)[0] + " "
        line = self.wait_for_line(word, timeout, start=mark)
        return line[line.index(word) + len(word) :]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait_for_line(self, needle: str, timeout: float = START_TIMEOUT, start: int = 0) -> str:
        """The first line from index ``start`` on that holds ``needle``.

        Raises :class:`StartError` when the process exits first and
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                start = len(self.lines)
                if not self.running():
                    raise StartError(f"{self.argv[0]} exited before {needle!r}:\n" + self.output())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {needle!r} from {self.argv[0]} in {timeout} s:\n" + self.output())
                self._changed.wait(min(left, 0.5))

    def count(self, needle: str) -> int:
        """How many lines so far hold ``needle``."""
        with self._changed:
            return sum(needle in line for line in self.lines)

    def output(self) -> str:
        """The last 60 lines, for error messages."""
        with self._changed:
            return "\n".join(self.lines[-60:])

    def send_signal(self, sig: int) -> None:
        """Signal the process when it runs."""
        if self.running():
            assert self.proc is not None
            if self.group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def wait(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for the exit and return its code; raises :class:`subprocess.TimeoutExpired`."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = START_TIMEOUT) -> int | None:
        """Signal, wait up to ``timeout``, then kill; the exit code (None when never started)."""
        if self.proc is None:
            return None
        self.send_signal(sig)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.wait(timeout)


class ServeNode(Child):
    """``python -m wsskit serve`` on 127.0.0.1 with a certificate of ours, restartable on its port."""

    def __init__(
        self,
        name: str,
        home: Path,
        certificates: DevCertificates | None,
        *options: str,
        backplane: str = "memory://",
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port if port is not None else free_port()
        self.tls = certificates is not None
        home.mkdir(parents=True, exist_ok=True)
        tls = ["--no-tls"]
        if certificates is not None:
            tls = ["--cert", str(certificates.cert), "--key", str(certificates.key)]
        argv = [
            sys.executable, "-m", "wsskit", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            *tls, "--backplane", backplane, "--log-level", "info", *options,
        ]  # fmt: skip
        env = {**os.environ, "WSSKIT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        super().__init__(argv, env=env)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and return once it serves; raises :class:`StartError` or :class:`TimeoutError`."""
        mark = len(self.lines)
        self.spawn()
        self.wait_for_line("serving ", timeout, start=mark)
        wait_for_port(self.port, timeout)

    def opened(self, path: str) -> int:
        """How many connections to ``path`` this node logged as opened (all its lives)."""
        return self.count(f"opened {path}")


class RedisProcess(Child):
    """A private ``redis-server`` without persistence: restarting it loses every key."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port if port is not None else free_port()
        directory.mkdir(parents=True, exist_ok=True)
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(directory),
        ]  # fmt: skip
        super().__init__(argv)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and return once it accepts connections."""
        mark = len(self.lines)
        self.spawn()
        self.wait_for_line("Ready to accept connections", timeout, start=mark)

    def restart(self) -> None:
        """Kill it (nothing is saved) and start it again on the same port."""
        self.stop(signal.SIGKILL)
        self.start()


class HAProxy(Child):
    """``haproxy -db -f CONFIG`` in the foreground; the configuration is checked first.

    ``stats_socket``: the admin socket the configuration opens, for :meth:`states`.
    """

    def __init__(self, config: Path, port: int, stats_socket: Path | None = None) -> None:
        self.config = config
        self.port = port
        self.stats_socket = stats_socket
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        super().__init__([binary, "-db", "-f", str(config)], cwd=config.parent)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Check the configuration, start, and return once the frontend listens."""
        check = subprocess.run(  # noqa: S603 - our own argument list
            [self.argv[0], "-c", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise StartError(f"haproxy -c refused {self.config}:\n{check.stdout}{check.stderr}")
        self.spawn()
        _wait_listening(self, timeout)

    def states(self, backend: str = "wsskit") -> dict[str, str]:
        """Each server of ``backend`` and its status (``UP``, ``DOWN``, ``UP 1/2``...).

        Read from the admin socket (``show stat``); raises :class:`OSError`.
        """
        assert self.stats_socket is not None, "no admin socket configured"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.reader(data.decode().lstrip("# ").splitlines())
        header = next(rows, [])
        states = {}
        for row in rows:
            record = dict(zip(header, row, strict=False))
            if record.get("pxname") == backend and record.get("svname") not in ("FRONTEND", "BACKEND"):
                states[record["svname"]] = record["status"]
        return states

    def wait_states(self, wanted: dict[str, str], timeout: float = 60.0) -> None:
        """Wait until each named server's status starts with the wanted one (``UP``, ``DOWN``).

        Raises :class:`TimeoutError` with the last states seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name, "").startswith(status) for name, status in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"HAProxy says {states}, waited {timeout} s for {wanted}")
            time.sleep(0.1)


class Nginx(Child):
    """``nginx -p PREFIX -c CONFIG -e stderr -g 'daemon off;'`` in the foreground."""

    def __init__(self, config: Path, port: int, prefix: Path) -> None:
        self.config = config
        self.port = port
        prefix.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        base = [binary, "-p", str(prefix), "-c", str(config), "-e", "stderr"]
        self._test = [*base, "-t"]
        super().__init__([*base, "-g", "daemon off;"], cwd=prefix, group=True)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Test the configuration, start, and return once the server listens."""
        check = subprocess.run(self._test, capture_output=True, text=True, check=False)  # noqa: S603
        if check.returncode != 0:
            raise StartError(f"nginx -t refused {self.config}:\n{check.stdout}{check.stderr}")
        self.spawn()
        _wait_listening(self, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = START_TIMEOUT) -> int | None:
        """Stop the master and its workers (SIGTERM: nginx's fast shutdown; SIGQUIT would
        wait for every WebSocket to end); kill the group after ``timeout``."""
        code = super().stop(sig, timeout)
        if self.proc is not None:
            # Workers that a SIGKILL of the group raced with: none may linger.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return code


def nginx_stream_module() -> str | None:
    """The ``load_module`` path of nginx's stream module; None when it is built in.

    Distributions build it as a module (Debian: ``libnginx-mod-stream``).
    Raises :class:`FileNotFoundError` when it is neither built in nor installed.
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr  # noqa: S603
    if "--with-stream " in built + " " and "--with-stream=dynamic" not in built:
        return None
    for folder in ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/share/nginx/modules"):
        path = Path(folder) / "ngx_stream_module.so"
        if path.exists():
            return str(path)
    raise FileNotFoundError(
        "nginx's stream module is not installed (Debian: apt-get install libnginx-mod-stream)"
    )


def _wait_listening(child: Child, timeout: float) -> None:
    port = getattr(child, "port", None)
    assert isinstance(port, int)
    deadline = time.monotonic() + timeout
    while True:
        if not child.running():
            raise StartError(f"{child.argv[0]} exited:\n{child.output()}")
        try:
            wait_for_port(port, 0.5)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
