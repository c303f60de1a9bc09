"""Run the Autobahn Testsuite against wsskit, as a server, as a client, or both.

    python compliance/run.py server|client|both [--quick] [--cases '1.*,2.*']
        [--exclude '12.*'] [--impl wsskit|websockets] [--tls]
        [--report-dir compliance/reports]

server  wstest -m fuzzingclient drives compliance/echo_server.py
client  wstest -m fuzzingserver is driven by compliance/echo_client.py

Prints what each role scored, per behavior and per case category, lists every case
that is not OK, and writes the same as Markdown to <report-dir>/summary.md. The full
HTML reports are in <report-dir>/servers/index.html and <report-dir>/clients/index.html.

Exit status: 0 when no case FAILED and every selected case has a result; 1 when a
case FAILED, results are missing or a peer crashed; 2 when the suite cannot run at
all (wstest not installed: run compliance/setup.sh first).

Needs only the standard library (plus ``cryptography``, a wsskit dependency, for
--tls) and a wstest made by compliance/setup.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fnmatch
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
DEFAULT_WSTEST = HERE / ".venv27" / "bin" / "wstest"
DEFAULT_REPORT_DIR = HERE / "reports"

#: Behaviors in the order they are shown; Autobahn's own names.
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
MISSING = "MISSING"

#: Categories 1-10 are cheap; 12.x/13.x push 1000 compressed messages per case,
#: up to 128 KiB each, and take most of a full run. --quick keeps, per 12.N data
#: set and per 13.N deflate parameter set, the cases with small messages (x.1-x.4,
#: 16 B to 1 KiB), which still exercise every negotiation and context takeover.
QUICK_CASES = (
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*",
    "12.*.1", "12.*.2", "12.*.3", "12.*.4",
    "13.*.1", "13.*.2", "13.*.3", "13.*.4",
)  # fmt: skip

#: Category names by Autobahn's numbering (shorter than wstest's own, and 10 is not "Misc").
CATEGORY_NAMES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Auto-Fragmentation",
    "12": "Compression (different payloads)",
    "13": "Compression (different parameters)",
}

ROLE_DIRS = {"server": "servers", "client": "clients"}

# Lists the suite's case ids from inside the Python 2.7 venv (so no case list is copied here).
_LIST_CASES_PY27 = """
import json, warnings
warnings.simplefilter("ignore")
import autobahntestsuite
from autobahntestsuite.case import Cases, CaseBasename, CaseCategories
ids = [".".join(c.__name__[len(CaseBasename):].split("_")) for c in Cases]
print(json.dumps({"version": autobahntestsuite.version, "cases": ids, "categories": CaseCategories}))
"""


class HarnessError(Exception):
    """The harness could not run a role (not a verdict on the implementation)."""


# --------------------------------------------------------------------------- cases


def case_key(case_id: str) -> tuple[int, ...]:
    """'7.13.1' -> (7, 13, 1): Autobahn's order."""
    return tuple(int(part) for part in case_id.split("."))


def split_patterns(values: Iterable[str]) -> list[str]:
    """Comma- or space-separated patterns from every occurrence of an option."""
    return [p for value in values for p in value.replace(",", " ").split() if p]


def select_cases(all_ids: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The ids matched by ``include`` and not by ``exclude``, in Autobahn's order.

    Patterns are shell globs matched against the whole id (``1.*``, ``12.?.1``,
    ``6.4.3``). An include pattern that matches nothing is an error (a typo would
    otherwise shrink the run silently).
    """
    chosen: set[str] = set()
    for pattern in include:
        matched = fnmatch.filter(all_ids, pattern)
        if not matched:
            raise HarnessError(f"--cases pattern {pattern!r} matches no Autobahn case")
        chosen.update(matched)
    for pattern in exclude:
        chosen.difference_update(fnmatch.filter(all_ids, pattern))
    return sorted(chosen, key=case_key)


@dataclass(frozen=True)
class Suite:
    """What the installed wstest offers."""

    wstest: Path
    python: Path
    version: str
    case_ids: tuple[str, ...]
    categories: dict[str, str]


def load_suite(wstest: Path) -> Suite:
    """Ask the Python 2.7 venv for the suite's version, cases and categories."""
    python = wstest.parent / "python"
    if not wstest.exists() or not python.exists():
        raise HarnessError(f"wstest not found at {wstest}; run compliance/setup.sh first (or pass --wstest)")
    proc = subprocess.run(
        [str(python), "-c", _LIST_CASES_PY27],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessError(f"cannot list the Autobahn cases with {python}:\n{proc.stderr.strip()}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    categories = {**{k: str(v) for k, v in info["categories"].items()}, **CATEGORY_NAMES}
    return Suite(wstest, python, str(info["version"]), tuple(info["cases"]), categories)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen[Any], what: str, timeout: float) -> None:
    """Poll ``predicate()`` until true; fail early if ``proc`` exits, late on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise HarnessError(f"{what}: the process exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise HarnessError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(0.1)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: only the process we started."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 6) -> str:
    """The last lines of a log, indented, to explain a failure without opening the file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "".join(f"\n    | {line}" for line in text[-lines:])


def py27_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines as they happen, not per 4 KiB
    env["PYTHONWARNINGS"] = "ignore"  # "Python 2 is no longer supported" on every import
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


class Progress:
    """Shows how far a role got: every case with --verbose, else every 30 seconds."""

    def __init__(self, role: str, total: int, verbose: bool) -> None:
        self.role = role
        self.total = total
        self.verbose = verbose
        self.done = 0
        self.started = time.monotonic()
        self.last_print = self.started

    def case(self, label: str) -> None:
        self.done += 1
        now = time.monotonic()
        if self.verbose or now - self.last_print >= 30:
            self.last_print = now
            print(
                f"[{self.role}] {self.done}/{self.total} {label} ({now - self.started:.0f}s)",
                flush=True,
            )


def pump(stream: IO[str], log: IO[str], on_line: Callable[[str], None]) -> None:
    """Copy a child's output to its log file, handing each line to ``on_line``."""
    for line in stream:
        log.write(line)
        log.flush()
        on_line(line.rstrip("\n"))


def _watchdog(proc: subprocess.Popen[Any], timeout: float | None, role: str) -> threading.Timer | None:
    if timeout is None:
        return None

    def expire() -> None:
        if proc.poll() is None:
            print(f"[{role}] --timeout of {timeout:.0f}s reached; stopping", file=sys.stderr, flush=True)
            stop(proc, grace=5)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer


# --------------------------------------------------------------------------- TLS


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1; returns (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsskit compliance CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    # The chain file carries the CA too, so peers that want a full chain get one.
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


# --------------------------------------------------------------------------- roles


@dataclass
class CaseResult:
    behavior: str
    behavior_close: str
    close_code: int | None
    duration_ms: int
    result: str = ""
    result_close: str = ""


@dataclass
class RoleRun:
    role: str
    agent: str
    expected: list[str]
    results: dict[str, CaseResult] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def missing(self) -> list[str]:
        return [c for c in self.expected if c not in self.results]

    def behavior_of(self, case_id: str) -> str:
        result = self.results.get(case_id)
        return MISSING if result is None else result.behavior

    @property
    def failed(self) -> bool:
        return (
            self.error is not None
            or bool(self.missing)
            or any(r.behavior == "FAILED" for r in self.results.values())
        )


@dataclass(frozen=True)
class Options:
    suite: Suite
    cases: list[str]
    impl: str
    agent: str
    report_dir: Path
    tls: tuple[Path, Path, Path] | None
    timeout: float | None
    verbose: bool


_GENERIC_RESULTS = ("Actual events match at least one expected.", "Actual events are undefined by the spec.")


def _plain(html: str, limit: int = 140) -> str:
    """Autobahn's case description as one line of text: tags dropped, whitespace folded."""
    text = " ".join(re.sub(r"<[^>]*>", " ", html).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def read_results(outdir: Path, agent: str, expected: Sequence[str]) -> dict[str, CaseResult]:
    """Parse Autobahn's index.json (and the per-case reports of cases that are not OK)."""
    index_path = outdir / "index.json"
    if not index_path.exists():
        return {}
    index = json.loads(index_path.read_text(encoding="utf-8"))
    cases: dict[str, Any] = index.get(agent, {})
    results: dict[str, CaseResult] = {}
    for case_id, entry in cases.items():
        result = CaseResult(
            behavior=str(entry.get("behavior", "FAILED")),
            behavior_close=str(entry.get("behaviorClose", "")),
            close_code=entry.get("remoteCloseCode"),
            duration_ms=int(entry.get("duration") or 0),
        )
        if result.behavior != "OK" or result.behavior_close not in ("OK", "INFORMATIONAL"):
            report = outdir / str(entry.get("reportfile", ""))
            if report.is_file():
                try:
                    detail = json.loads(report.read_text(encoding="utf-8"))
                except ValueError:
                    detail = {}
                result.result = str(detail.get("result", ""))
                result.result_close = str(detail.get("resultClose", ""))
                if result.result in _GENERIC_RESULTS:
                    # "Actual events match at least one expected." says nothing: say what the case does.
                    result.result = _plain(str(detail.get("description", ""))) or result.result
        results[case_id] = result
    return {c: results[c] for c in expected if c in results}


def _fresh_outdir(report_dir: Path, role: str) -> Path:
    outdir = report_dir / ROLE_DIRS[role]
    if outdir.exists():
        shutil.rmtree(outdir)  # stale per-case files would mix with this run's
    outdir.mkdir(parents=True)
    return outdir


def _write_spec(path: Path, spec: dict[str, Any]) -> None:
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def run_server_role(opts: Options) -> RoleRun:
    """wstest's fuzzing client against our echo server."""
    run = RoleRun("server", opts.agent, list(opts.cases))
    outdir = _fresh_outdir(opts.report_dir, "server")
    port = free_port()
    scheme = "wss" if opts.tls else "ws"
    server_cmd = [sys.executable, str(HERE / "echo_server.py"), "--impl", opts.impl, "--port", str(port)]
    if opts.tls:
        server_cmd += ["--certfile", str(opts.tls[1]), "--keyfile", str(opts.tls[2])]
    spec_path = opts.report_dir / "fuzzingclient.json"
    _write_spec(
        spec_path,
        {
            "outdir": str(outdir),
            "servers": [
                {"agent": opts.agent, "url": f"{scheme}://127.0.0.1:{port}", "options": {"version": 18}}
            ],
            "cases": opts.cases,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        },
    )
    server_log_path = opts.report_dir / "echo_server.log"
    wstest_log_path = opts.report_dir / "wstest-fuzzingclient.log"
    server: subprocess.Popen[str] | None = None
    started = time.monotonic()
    try:
        with server_log_path.open("w", encoding="utf-8") as server_log:
            server = subprocess.Popen(
                server_cmd, stdout=server_log, stderr=subprocess.STDOUT, text=True, cwd=opts.report_dir
            )

            def listening() -> bool:
                return "LISTENING" in server_log_path.read_text(encoding="utf-8", errors="replace")

            try:
                wait_until(listening, server, f"echo server ({opts.impl}), see {server_log_path}", 30)
            except HarnessError as exc:
                raise HarnessError(f"{exc}{log_tail(server_log_path)}") from None
            print(
                f"[server] {opts.impl} echo server on {scheme}://127.0.0.1:{port}; "
                f"running {len(opts.cases)} cases",
                flush=True,
            )

            progress = Progress("server", len(opts.cases), opts.verbose)

            def on_line(line: str) -> None:
                if line.startswith("Running test case ID "):
                    progress.case(line.split()[4])

            with wstest_log_path.open("w", encoding="utf-8") as wstest_log:
                wstest = subprocess.Popen(
                    [str(opts.suite.wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=opts.report_dir,
                    env=py27_env(),
                )
                timer = _watchdog(wstest, opts.timeout, "server")
                try:
                    assert wstest.stdout is not None
                    pump(wstest.stdout, wstest_log, on_line)
                    status = wstest.wait()
                finally:
                    if timer:
                        timer.cancel()
                    stop(wstest)
            if status != 0:
                run.error = (
                    f"wstest -m fuzzingclient exited with status {status}; see {wstest_log_path}"
                    + log_tail(wstest_log_path)
                )
            if server.poll() is not None:
                run.error = (
                    f"the echo server died during the run (status {server.returncode}); see {server_log_path}"
                    + log_tail(server_log_path)
                )
    except HarnessError as exc:
        run.error = str(exc)
    finally:
        stop(server)
    run.seconds = time.monotonic() - started
    run.results = read_results(outdir, opts.agent, opts.cases)
    return run


def run_client_role(opts: Options) -> RoleRun:
    """Our echo client against wstest's fuzzing server."""
    run = RoleRun("client", opts.agent, list(opts.cases))
    outdir = _fresh_outdir(opts.report_dir, "client")
    port = free_port()
    scheme = "wss" if opts.tls else "ws"
    url = f"{scheme}://127.0.0.1:{port}"
    spec: dict[str, Any] = {
        "url": url,
        "outdir": str(outdir),
        "cases": opts.cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    if opts.tls:
        spec["cert"], spec["key"] = str(opts.tls[1]), str(opts.tls[2])
    spec_path = opts.report_dir / "fuzzingserver.json"
    _write_spec(spec_path, spec)
    wstest_log_path = opts.report_dir / "wstest-fuzzingserver.log"
    client_log_path = opts.report_dir / "echo_client.log"
    wstest: subprocess.Popen[str] | None = None
    started = time.monotonic()
    try:
        with wstest_log_path.open("w", encoding="utf-8") as wstest_log:
            # -u 0: no embedded web server (it would take port 8080).
            wstest = subprocess.Popen(
                [str(opts.suite.wstest), "-m", "fuzzingserver", "-s", str(spec_path), "-u", "0"],
                stdout=wstest_log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=opts.report_dir,
                env=py27_env(),
            )
            try:
                wait_until(
                    lambda: port_accepts(port), wstest, f"wstest fuzzingserver, see {wstest_log_path}", 120
                )
            except HarnessError as exc:
                raise HarnessError(f"{exc}{log_tail(wstest_log_path)}") from None
            print(
                f"[client] wstest fuzzing server on {url}; {opts.impl} client runs {len(opts.cases)} cases",
                flush=True,
            )

            progress = Progress("client", len(opts.cases), opts.verbose)

            def on_line(line: str) -> None:
                if line.startswith("CASE "):
                    number = int(line.split()[1].split("/")[0])
                    label = opts.cases[number - 1] if 0 < number <= len(opts.cases) else str(number)
                    progress.case(f"{label} {' '.join(line.split()[2:])}")

            client_cmd = [
                sys.executable,
                str(HERE / "echo_client.py"),
                "--impl",
                opts.impl,
                "--agent",
                opts.agent,
                "--url",
                url,
            ]
            if opts.tls:
                client_cmd += ["--cafile", str(opts.tls[0])]
            with client_log_path.open("w", encoding="utf-8") as client_log:
                client = subprocess.Popen(
                    client_cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=opts.report_dir,
                )
                timer = _watchdog(client, opts.timeout, "client")
                try:
                    assert client.stdout is not None
                    pump(client.stdout, client_log, on_line)
                    status = client.wait()
                finally:
                    if timer:
                        timer.cancel()
                    stop(client)
            if status != 0:
                run.error = f"the echo client exited with status {status}; see {client_log_path}" + log_tail(
                    client_log_path
                )
                # The fuzzing server writes results only when asked: save the finished cases.
                with (
                    client_log_path.open("a", encoding="utf-8") as client_log,
                    contextlib.suppress(subprocess.TimeoutExpired),
                ):
                    subprocess.run(
                        [*client_cmd, "--reports-only"],
                        stdout=client_log,
                        stderr=subprocess.STDOUT,
                        timeout=120,
                        check=False,
                        cwd=opts.report_dir,
                    )
    except HarnessError as exc:
        run.error = str(exc)
    finally:
        stop(wstest)
    run.seconds = time.monotonic() - started
    run.results = read_results(outdir, opts.agent, opts.cases)
    return run


def existing_run(opts: Options, role: str) -> RoleRun:
    """A role's results as an earlier run left them in the report directory."""
    run = RoleRun(role, opts.agent, list(opts.cases))
    outdir = opts.report_dir / ROLE_DIRS[role]
    run.results = read_results(outdir, opts.agent, opts.cases)
    if not (outdir / "index.json").exists():
        run.error = f"no {outdir / 'index.json'}"
    run.seconds = sum(r.duration_ms for r in run.results.values()) / 1000  # case time, no overhead
    return run


# --------------------------------------------------------------------------- summary


def _category(case_id: str) -> str:
    return case_id.split(".", 1)[0]


def _counts(run: RoleRun, cases: Iterable[str]) -> Counter[str]:
    return Counter(run.behavior_of(c) for c in cases)


def _columns(runs: Sequence[RoleRun]) -> list[str]:
    extra = sorted({run.behavior_of(c) for run in runs for c in run.expected} - set(BEHAVIORS) - {MISSING})
    has_missing = any(run.missing for run in runs)
    return [*BEHAVIORS, *extra, *([MISSING] if has_missing else [])]


def _not_ok(run: RoleRun) -> list[tuple[str, str, str]]:
    """(case, behavior, detail) for every case whose behavior or close behavior is not OK."""
    rows = []
    for case_id in run.expected:
        result = run.results.get(case_id)
        if result is None:
            rows.append((case_id, MISSING, "no result in index.json"))
            continue
        close_ok = result.behavior_close in ("OK", "INFORMATIONAL")
        if result.behavior == "OK" and close_ok:
            continue
        detail = result.result
        if not close_ok and result.result_close == detail:
            detail = ""  # Autobahn often copies the close verdict into the case's result
        if not close_ok:
            close = f"close {result.behavior_close}"
            if result.close_code is not None:
                close += f" (code {result.close_code})"
            if result.result_close:
                close += f": {result.result_close}"
            detail = f"{detail}; {close}" if detail else close
        rows.append((case_id, result.behavior, detail))
    return rows


def _fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def text_summary(runs: Sequence[RoleRun], suite: Suite) -> str:
    columns = _columns(runs)
    lines = []
    for run in runs:
        counts = _counts(run, run.expected)
        lines.append("")
        lines.append(
            f"== {run.role} role ({run.agent}, {len(run.expected)} cases, {_fmt_duration(run.seconds)}) =="
        )
        if run.error:
            lines.append(f"ERROR: {run.error}")
        lines.append("  " + "  ".join(f"{b}={counts.get(b, 0)}" for b in columns))
        header = f"  {'category':<42}" + "".join(f"{b[:13]:>14}" for b in columns)
        lines.append(header)
        for cat in sorted({_category(c) for c in run.expected}, key=int):
            cat_cases = [c for c in run.expected if _category(c) == cat]
            cat_counts = _counts(run, cat_cases)
            name = f"{cat} {suite.categories.get(cat, '')}"[:40]
            lines.append(f"  {name:<42}" + "".join(f"{cat_counts.get(b, 0):>14}" for b in columns))
        rows = _not_ok(run)
        if rows:
            lines.append(f"  not OK ({len(rows)}):")
            for case_id, behavior, detail in rows:
                lines.append(f"    {case_id:<9} {behavior:<14} {detail}".rstrip())
    verdict = "FAIL" if any(r.failed for r in runs) else "PASS"
    lines.append("")
    lines.append(
        f"{verdict}: "
        + ", ".join(f"{r.role} {_counts(r, r.expected).get('OK', 0)}/{len(r.expected)} OK" for r in runs)
    )
    return "\n".join(lines)


def markdown_summary(runs: Sequence[RoleRun], suite: Suite, impl: str, tls: bool) -> str:
    columns = _columns(runs)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    out = [
        f"# Autobahn Testsuite results: {impl}",
        "",
        f"Autobahn Testsuite {suite.version}, {'wss:// (TLS)' if tls else 'ws://'} on loopback, {today}. "
        "Made by `python compliance/run.py`; full reports in `servers/index.html` and `clients/index.html`.",
        "",
    ]
    # Overview: one row per role.
    out.append("| role | cases | " + " | ".join(columns) + " | time |")
    out.append("|---|---:|" + "---:|" * len(columns) + "---:|")
    for run in runs:
        counts = _counts(run, run.expected)
        out.append(
            f"| {run.role} ({run.agent}) | {len(run.expected)} | "
            + " | ".join(str(counts.get(b, 0)) for b in columns)
            + f" | {_fmt_duration(run.seconds)} |"
        )
    # Per category: OK/total for each role side by side.
    out += ["", "| category | " + " | ".join(f"{r.role}" for r in runs) + " |"]
    out.append("|---|" + "---|" * len(runs))
    cats = sorted({_category(c) for r in runs for c in r.expected}, key=int)
    for cat in cats:
        cells = []
        for run in runs:
            cat_cases = [c for c in run.expected if _category(c) == cat]
            if not cat_cases:
                cells.append("")
                continue
            counts = _counts(run, cat_cases)
            parts = [f"{counts.get('OK', 0)}/{len(cat_cases)} OK"]
            parts += [f"{counts[b]} {b}" for b in columns if b != "OK" and counts.get(b)]
            cells.append(", ".join(parts))
        out.append(f"| {cat} {suite.categories.get(cat, '')} | " + " | ".join(cells) + " |")
    for run in runs:
        rows = _not_ok(run)
        out += ["", f"## {run.role} role: cases that are not OK ({len(rows)})", ""]
        if run.error:
            out += [f"Harness error: {run.error}", ""]
        if not rows:
            out.append("None.")
            continue
        out += ["| case | behavior | detail |", "|---|---|---|"]
        for case_id, behavior, detail in rows:
            out.append(f"| {case_id} | {behavior} | {detail.replace('|', '/')} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="compliance/run.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Patterns are comma-separated shell globs on case ids, e.g. '1.*,6.4.*,7.13.2'.",
    )
    parser.add_argument("role", choices=("server", "client", "both"), help="which side of wsskit to test")
    parser.add_argument("--cases", action="append", default=[], help="cases to run (default: all, '*')")
    parser.add_argument("--exclude", action="append", default=[], help="cases to leave out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="categories 1-10 and the small-message cases of 12.x/13.x (x.1-x.4): a few minutes",
    )
    parser.add_argument(
        "--impl",
        choices=("wsskit", "websockets"),
        default="wsskit",
        help="implementation under test; websockets checks the harness (default: wsskit)",
    )
    parser.add_argument("--agent", help="agent name in the reports (default: the implementation's name)")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help="where reports, logs and summary.md go (default: compliance/reports)",
    )
    parser.add_argument("--tls", action="store_true", help="run over wss:// with a throwaway CA")
    parser.add_argument(
        "--wstest",
        type=Path,
        default=Path(os.environ.get("WSTEST", DEFAULT_WSTEST)),
        help="wstest to use (default: $WSTEST or compliance/.venv27/bin/wstest)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop a role after this many seconds (its unfinished cases count as missing)",
    )
    parser.add_argument(
        "--strict-close", action="store_true", help="also fail on a close behavior of FAILED or UNCLEAN"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: summarize the reports an earlier run left in --report-dir",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case as it starts")
    args = parser.parse_args(argv)
    if args.quick and args.cases:
        parser.error("--quick and --cases do not go together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        suite = load_suite(args.wstest.resolve())
        include = split_patterns(args.cases) or (list(QUICK_CASES) if args.quick else ["*"])
        cases = select_cases(suite.case_ids, include, split_patterns(args.exclude))
    except HarnessError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print("run.py: no case left to run after --exclude", file=sys.stderr)
        return 2

    report_dir: Path = args.report_dir.resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    opts = Options(
        suite=suite,
        cases=cases,
        impl=args.impl,
        agent=args.agent or args.impl,
        report_dir=report_dir,
        tls=None,
        timeout=args.timeout,
        verbose=args.verbose,
    )
    roles = ("server", "client") if args.role == "both" else (args.role,)
    print(
        f"Autobahn Testsuite {suite.version} ({suite.wstest}); {len(cases)} of {len(suite.case_ids)} "
        f"cases; reports {'read from' if args.report_only else 'in'} {report_dir}",
        flush=True,
    )

    runs: list[RoleRun] = []
    if args.report_only:
        runs = [existing_run(opts, role) for role in roles]
    else:
        tls_dir = Path(tempfile.mkdtemp(prefix="wsskit-autobahn-tls-")) if args.tls else None
        try:
            if tls_dir is not None:
                opts = dataclasses.replace(opts, tls=make_certificates(tls_dir))
            for role in roles:
                runs.append(run_server_role(opts) if role == "server" else run_client_role(opts))
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            if tls_dir is not None:
                shutil.rmtree(tls_dir, ignore_errors=True)

    print(text_summary(runs, suite))
    summary_path = report_dir / "summary.md"
    summary_path.write_text(
        markdown_summary(runs, suite, args.agent or args.impl, args.tls), encoding="utf-8"
    )
    print(f"summary written to {summary_path}")

    failed = any(run.failed for run in runs)
    if args.strict_close:
        failed = failed or any(
            r.behavior_close in ("FAILED", "UNCLEAN") for run in runs for r in run.results.values()
        )
    # The plain closing line CI readers understand: a case passes unless it
    # FAILED or has no result (both roles counted).
    bad = sum(1 for run in runs for c in run.expected if run.behavior_of(c) in ("FAILED", MISSING))
    total = sum(len(run.expected) for run in runs)
    print(f"conformance: {total - bad} passed, {bad} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
