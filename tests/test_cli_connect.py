"""`wsskit connect`: the real command, as a child process, against real wss:// servers on loopback.

The server runs in the test's event loop; the client is `python -m wsskit
connect` with pipes (or a file) for its standard streams. Where a test does
not exercise the end-of-input grace time, the server ends the conversation
(it closes after a sentinel message, or after what it had to say), so no
test depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.serve_process import free_port
from wsskit import tls
from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.certs import DevCertificates, ensure_dev_certificates
from wsskit.cli import main
from wsskit.cli_connect import INSECURE_WARNING
from wsskit.exceptions import ConnectionClosed
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.headers import Headers

TIMEOUT = 20
BYE = "bye!"  # the echo endpoint closes with 1000 after echoing this

# The client must reach 127.0.0.1 directly, whatever proxy the machine sets.
ENV = {
    name: value
    for name, value in os.environ.items()
    if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    paths, _ = ensure_dev_certificates(tmp_path_factory.mktemp("connect-certs"))
    return paths


@dataclass
class Endpoints:
    """A wss:// server whose paths each play one part; it records what it saw."""

    ca: str
    server: Server | None = None
    received: list[str | bytes] = field(default_factory=list)
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    generation: int = 1

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, path: str) -> str:
        return f"wss://127.0.0.1:{self.port}{path}"


def _refuse(connection: ServerConnection, request: Request) -> Reject | None:
    if request.path == "/forbidden":
        return Reject(403, Headers([("Content-Type", "text/plain")]), b"no entry here\n")
    return None


async def _start(state: Endpoints, context: ssl.SSLContext, port: int = 0) -> Server:
    async def handler(ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        path = request.path
        try:
            if path == "/echo":
                async for message in ws:
                    state.received.append(message)
                    await ws.send(message)
                    if message in (BYE, BYE.encode()):
                        await ws.close(1000, "bye")
            elif path == "/header":
                await ws.send(request.headers.get("X-Wsskit-Test") or "<no header>")
                await ws.close(1000)
            elif path == "/json":
                await ws.send('{"name": "wsskit", "list": [1, 2]}')
                await ws.send("not json {")
                await ws.close(1000)
            elif path == "/binary":
                await ws.send(b"\x00\x01hi\xff")
                await ws.close(1000)
            elif path == "/fail":
                await ws.close(1011, "boom")
            elif path == "/generation":
                await ws.send(f"generation {state.generation}")
                async for message in ws:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        state.closes.append((ws.close_code, ws.close_reason))

    return await serve(
        handler,
        "127.0.0.1",
        port,
        ssl=context,
        subprotocols=["chat"],
        process_request=_refuse,
        ping_interval=None,
        close_timeout=5,
    )


@pytest.fixture
async def server(certificates: DevCertificates) -> AsyncIterator[Endpoints]:
    state = Endpoints(str(certificates.ca_cert))
    state.server = await _start(state, tls.server_context(certificates.cert, certificates.key))
    try:
        yield state
    finally:
        await state.server.close()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsskit", "connect", *args]


async def run_connect(*args: str, stdin: bytes | Path | int = b"") -> Result:
    """Run `wsskit connect ARGS` to its end.

    ``stdin``: bytes written through a pipe (a socket pair, as asyncio makes
    them), a file, or a file descriptor to pass on (such as an ``os.pipe``).
    """
    if isinstance(stdin, bytes):
        proc = await asyncio.create_subprocess_exec(
            *_command(*args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    else:
        with stdin.open("rb") if isinstance(stdin, Path) else os.fdopen(stdin, "rb") as source:
            proc = await asyncio.create_subprocess_exec(
                *_command(*args),
                stdin=source,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=ENV,
            )
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def _line(stream: asyncio.StreamReader | None, needle: str = "") -> str:
    """The next line of ``stream`` that holds ``needle``."""
    assert stream is not None
    while True:
        raw = await asyncio.wait_for(stream.readline(), TIMEOUT)
        assert raw, f"stream ended before a line with {needle!r}"
        line = raw.decode()
        if needle in line:
            return line


# -- piped input and output ----------------------------------------------------------------


async def test_piped_lines_are_sent_and_replies_printed_then_it_closes_with_1000(server: Endpoints) -> None:
    # The end of input: wait (1 s by default) for the replies, then close with 1000.
    result = await run_connect(
        server.url("/echo"), "--cacert", server.ca, stdin="hi\nünï ✓\n//slash\n/ping abc\n".encode()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\nünï ✓\n/slash\n"
    assert server.received == ["hi", "ünï ✓", "/slash"]
    assert server.closes == [(1000, "")]
    assert f"connected to wss://127.0.0.1:{server.port}/echo" in result.stderr
    assert "pong: round trip" in result.stderr
    assert "closed: 1000 (normal closure)" in result.stderr


@pytest.mark.parametrize("source", ["file", "fifo"])
async def test_input_from_a_file_or_a_fifo(server: Endpoints, tmp_path: Path, source: str) -> None:
    data = f"one\r\ntwo\n{BYE}".encode()  # CRLF, and no end of line at the end
    stdin: Path | int
    if source == "file":  # read by a thread
        stdin = tmp_path / "input.txt"
        stdin.write_bytes(data)
    else:  # an os.pipe, as a shell makes them: read by the event loop
        stdin, write_end = os.pipe()
        os.write(write_end, data)
        os.close(write_end)
    result = await run_connect(server.url("/echo"), "--cacert", server.ca, "--wait", "30", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"one\ntwo\n{BYE}\n"
    assert server.received == ["one", "two", BYE]
    assert "closed by the server: 1000 (normal closure): bye" in result.stderr


async def test_json_is_pretty_printed_and_other_text_left_alone(server: Endpoints) -> None:
    result = await run_connect(server.url("/json"), "--cacert", server.ca, "--json")
    assert result.returncode == 0, result.stderr
    expected = json.dumps({"name": "wsskit", "list": [1, 2]}, indent=2) + "\nnot json {\n"
    assert result.stdout == expected
    plain = await run_connect(server.url("/json"), "--cacert", server.ca)
    assert plain.stdout == '{"name": "wsskit", "list": [1, 2]}\nnot json {\n'


@pytest.mark.parametrize(("mode", "shown"), [((), "00016869ff"), (("--binary", "base64"), "AAFoaf8=")])
async def test_binary_messages_are_shown_as_hex_or_base64(
    server: Endpoints, mode: tuple[str, ...], shown: str
) -> None:
    result = await run_connect(server.url("/binary"), "--cacert", server.ca, *mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown + "\n"


@pytest.mark.parametrize(
    ("mode", "lines", "shown"),
    [
        ("hex", "48656c6c6f\nnot hex\n62796521\n", "48656c6c6f\n62796521\n"),
        ("base64", "SGVsbG8=\n***\nYnllIQ==\n", "SGVsbG8=\nYnllIQ==\n"),
    ],
)
async def test_with_binary_lines_are_decoded_and_sent_as_binary(
    server: Endpoints, mode: str, lines: str, shown: str
) -> None:
    # The last line is the sentinel, in binary: the server closes after echoing it.
    result = await run_connect(
        server.url("/echo"), "--cacert", server.ca, "--binary", mode, "--wait", "30", stdin=lines.encode()
    )
    assert result.returncode == 0, result.stderr
    # Bytes: binary messages; the line that does not decode was not sent.
    assert server.received == [b"Hello", BYE.encode()]
    assert result.stdout == shown
    assert f"error: not {mode}" in result.stderr


async def test_close_command_sends_its_code_and_reason(server: Endpoints) -> None:
    result = await run_connect(
        server.url("/echo"),
        "--cacert",
        server.ca,
        "--wait",
        "30",
        stdin=b"first\n/close 4000 see you\nlater\n",
    )
    assert result.returncode == 0, result.stderr  # we closed: a normal end, whatever the code
    assert server.received == ["first"]
    assert server.closes == [(4000, "see you")]
    # "first" may come back or not: the server may see the Close before it echoes.
    assert "later" not in result.stdout


async def test_help_and_unknown_commands_send_nothing(server: Endpoints) -> None:
    result = await run_connect(
        server.url("/echo"), "--cacert", server.ca, "--wait", "30", stdin=f"/help\n/nope\n{BYE}\n".encode()
    )
    assert result.returncode == 0, result.stderr
    assert server.received == [BYE]
    assert "/close [CODE [REASON]]" in result.stderr
    assert "unknown command /nope" in result.stderr


# -- the opening handshake ------------------------------------------------------------------


async def test_headers_and_subprotocols_reach_the_server(server: Endpoints) -> None:
    result = await run_connect(
        server.url("/header"),
        "--cacert",
        server.ca,
        "--header",
        "X-Wsskit-Test: hello there",
        "--subprotocol",
        "other",
        "--subprotocol",
        "chat",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello there\n"
    assert "subprotocol chat" in result.stderr
    without = await run_connect(server.url("/header"), "--cacert", server.ca)
    assert without.stdout == "<no header>\n"


# -- exit status --------------------------------------------------------------------------------


async def test_a_server_closing_with_1011_exits_1(server: Endpoints) -> None:
    result = await run_connect(server.url("/fail"), "--cacert", server.ca, "--wait", "30")
    assert result.returncode == 1
    assert "closed by the server: 1011 (internal error): boom" in result.stderr


async def test_a_refused_handshake_exits_3_with_the_status(server: Endpoints) -> None:
    result = await run_connect(server.url("/forbidden"), "--cacert", server.ca, stdin=b"hi\n")
    assert result.returncode == 3
    assert "HTTP 403 Forbidden" in result.stderr
    assert "no entry here" in result.stderr
    assert result.stdout == ""


async def test_a_refused_connection_exits_4() -> None:
    result = await run_connect(f"ws://127.0.0.1:{free_port()}/", stdin=b"hi\n")
    assert result.returncode == 4
    assert "connection refused" in result.stderr


async def test_an_untrusted_certificate_exits_4_and_insecure_connects_with_a_warning(
    server: Endpoints,
) -> None:
    untrusted = await run_connect(server.url("/echo"), stdin=f"{BYE}\n".encode())
    assert untrusted.returncode == 4
    assert "certificate not verified" in untrusted.stderr
    assert "--cacert" in untrusted.stderr
    assert "WARNING" not in untrusted.stderr

    # The chain does not verify without --cacert; --insecure connects anyway, loudly.
    insecure = await run_connect(server.url("/echo"), "--insecure", "--wait", "30", stdin=f"{BYE}\n".encode())
    assert insecure.returncode == 0, insecure.stderr
    assert insecure.stdout == f"{BYE}\n"
    assert insecure.stderr.startswith(INSECURE_WARNING + "\n")
    assert "NOT verified" in insecure.stderr


async def test_ctrl_c_closes_with_1000_and_exits_130(server: Endpoints) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_command(server.url("/echo"), "--cacert", server.ca),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    await _line(proc.stderr, "connected to")
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 130
    assert server.closes == [(1000, "")]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["connect", "ws://127.0.0.1:1/", "--cacert", "ca.pem"]) == 2
    assert "need a wss:// URL" in capsys.readouterr().err
    assert main(["connect", "http://127.0.0.1/"]) == 2
    assert main(["connect", "wss://127.0.0.1/", "--insecure", "--cacert", "ca.pem"]) == 2
    assert main(["connect", "wss://127.0.0.1/", "--key", "key.pem"]) == 2
    missing = tmp_path / "missing.pem"
    assert main(["connect", "wss://127.0.0.1/", "--cacert", str(missing)]) == 2
    assert f"cannot read the --cacert file {missing}: No such file or directory" in capsys.readouterr().err
    for argv in (
        ["connect"],  # no URL
        ["connect", "wss://127.0.0.1/", "--header", "no colon"],
        ["connect", "wss://127.0.0.1/", "--wait", "-1"],
        ["connect", "wss://127.0.0.1/", "--binary", "octal"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_tls_files_that_do_not_load_are_named(
    capsys: pytest.CaptureFixture[str], certificates: DevCertificates, tmp_path: Path
) -> None:
    def error(*options: str) -> str:
        assert main(["connect", "wss://127.0.0.1/", *options]) == 2
        return capsys.readouterr().err

    missing = tmp_path / "missing.pem"
    assert f"cannot read the --cert file {missing}" in error("--cert", str(missing))
    assert f"cannot read the --key file {missing}" in error(
        "--cert", str(certificates.cert), "--key", str(missing)
    )
    err = error("--cacert", str(certificates.key))
    assert f"cannot load the --cacert file {certificates.key}: no PEM certificate in it" in err
    err = error("--cacert", str(certificates.ca_cert), "--cert", str(certificates.cert))
    assert f"cannot load the client certificate {certificates.cert} without a key" in err
    assert "pass --key KEY.pem (or put the key in the --cert file)" in err
    err = error("--cert", str(certificates.cert), "--key", str(certificates.ca_key))
    assert f"cannot load the client certificate {certificates.cert} with the key {certificates.ca_key}" in err


async def test_ws_to_a_wss_server_suggests_wss(server: Endpoints) -> None:
    result = await run_connect(server.url("/echo").replace("wss://", "ws://", 1), stdin=b"hi\n")
    assert result.returncode == 3
    assert "does the server speak TLS? try wss://" in result.stderr


async def test_wss_to_a_plain_server_suggests_ws() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1000)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as plain:
        port = plain.sockets[0].getsockname()[1]
        result = await run_connect(f"wss://127.0.0.1:{port}/", "--insecure", stdin=b"hi\n")
    assert result.returncode == 4
    assert "the server may not speak TLS: try ws://" in result.stderr


# -- reconnecting -------------------------------------------------------------------------------


async def test_reconnect_across_a_server_restart(server: Endpoints, certificates: DevCertificates) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_command(server.url("/generation"), "--cacert", server.ca, "--reconnect", "--wait", "0"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdin is not None
    try:
        assert await _line(proc.stdout) == "generation 1\n"
        proc.stdin.write(b"one\n")
        assert await _line(proc.stdout) == "one\n"

        # Restart: the old server says 1001 (going away); a new one takes the port.
        port = server.port
        assert server.server is not None
        await server.server.close()
        server.generation = 2
        server.server = await _start(server, tls.server_context(certificates.cert, certificates.key), port)
        assert "connection closed: 1001 (going away): going away; reconnecting in" in await _line(
            proc.stderr, "reconnecting in"
        )
        proc.stdin.write(b"two\n")  # sent once connected again
        assert await _line(proc.stdout) == "generation 2\n"
        assert await _line(proc.stdout) == "two\n"
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        # The old server's 1001 (the client's reply), then the client's own 1000.
        assert [code for code, _ in server.closes] == [1001, 1000]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
