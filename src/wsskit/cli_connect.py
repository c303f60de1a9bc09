"""``wsskit connect URL``: an interactive WebSocket client for terminals and pipes.

Every line read from standard input is sent as a message; every message
received is printed on standard output, one per line. Status lines
(connected, closed, errors) go to standard error, so that a pipe carries
messages only::

    echo hi | wsskit connect wss://127.0.0.1:8443/echo --cacert ca.pem

What is sent and shown:

- a line is sent as a text message; with ``--binary hex`` or ``--binary
  base64`` it is decoded from that encoding and sent as a binary message;
- a text message is printed as it is (``--json`` pretty-prints one that
  holds JSON); a binary message is printed as hex, or as base64 with
  ``--binary base64``;
- on a line of their own: ``/ping [PAYLOAD]`` (the round-trip time is shown
  when the Pong arrives), ``/close [CODE [REASON]]``, ``/help``; ``//text``
  sends ``/text``;
- at the end of input (Ctrl-D, or the end of a pipe or file) the client
  waits ``--wait`` seconds (1 by default) for replies, unless the server
  closes first, then closes with 1000.

Standard input is read without blocking the event loop: a pipe or a socket
through :meth:`asyncio.loop.connect_read_pipe`, a terminal or a file by a
reader thread (making a terminal non-blocking would also affect the
processes that share it).

Exit status (also in ``wsskit connect --help``):

====  ====================================================================
0     closed normally: by the server with 1000, 1001 or no code (1005),
      or by this side (end of input, ``/close``, output pipe closed)
1     closed abnormally: any other close code, or the connection dropped
      without a Close frame (1006)
2     usage error: bad options or URL, TLS files that cannot be loaded
3     handshake failed: the server answered with an HTTP status other
      than 101 (printed), or with an invalid handshake
4     network or TLS error: connection refused, DNS, timeout, a
      certificate that does not verify
130   interrupted (Ctrl-C); the connection is closed with 1000 first
====  ====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import http
import json
import math
import os
import re
import signal
import socket
import ssl
import stat
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .asyncio import loops
from .asyncio.client import ClientConnection, _tls_hint, connect
from .exceptions import (
    ConnectionClosed,
    GiveUp,
    HandshakeError,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    LocalProtocolError,
)
from .protocol.connection import State
from .reconnect import ReconnectPolicy
from .tls import ALPN_PROTOCOLS, client_context
from .uri import WebSocketURI, parse_uri

__all__ = [
    "EXIT_OK",
    "EXIT_CLOSED_ABNORMALLY",
    "EXIT_USAGE",
    "EXIT_HANDSHAKE",
    "EXIT_NETWORK",
    "EXIT_INTERRUPTED",
    "INSECURE_WARNING",
    "add_connect_parser",
    "run_connect",
]

EXIT_OK = 0
EXIT_CLOSED_ABNORMALLY = 1
EXIT_USAGE = 2
EXIT_HANDSHAKE = 3
EXIT_NETWORK = 4
EXIT_INTERRUPTED = 130

#: Printed on standard error every time ``--insecure`` is used.
INSECURE_WARNING = (
    "wsskit: WARNING: --insecure: the server's certificate and host name are NOT verified.\n"
    "wsskit: WARNING: anyone on the network path can read and change this connection."
)

#: How ``--reconnect`` waits: a quick first attempt (an interactive user is
#: waiting), then longer and longer waits up to 30 s; it never gives up.
RECONNECT_POLICY = ReconnectPolicy(first_delay=1.0, initial_delay=1.0, factor=2.0, max_delay=30.0)

_DESCRIPTION = """\
Open a WebSocket connection to URL (ws:// or wss://) and talk to it: each line read
from standard input is sent as a message, each message received is printed on standard
output, one per line. Status lines (connected, closed, errors) go to standard error, so a
pipe carries messages only:  echo hi | wsskit connect wss://127.0.0.1:8443/echo"""

_COMMANDS = """\
  /ping [PAYLOAD]         send a Ping; show the round-trip time when its Pong arrives
  /close [CODE [REASON]]  close the connection (default 1000) and exit
  /help                   list these commands
  //text                  send "/text": a leading "//" stands for "/\""""

_EPILOG = f"""\
what is sent and shown:
  Each line is sent as a text message; with --binary hex|base64 it is decoded from hex or
  base64 and sent as a binary message (a line that does not decode is not sent). A text
  message received is printed as it is (--json pretty-prints one holding JSON); a binary
  one as hex, or as base64 with --binary base64. At the end of input (Ctrl-D, or the end
  of a pipe or file) the client waits --wait seconds for replies, unless the server closes
  first, then closes with 1000.

commands (on a line of their own):
{_COMMANDS}

exit status:
  0    closed normally: by the server with 1000, 1001 or no code (1005), or by this
       side (end of input, /close, output pipe closed)
  1    closed abnormally: any other close code, or the connection dropped without a
       Close frame (1006)
  2    usage error: bad options or URL, TLS files that cannot be loaded
  3    handshake failed: the server answered with an HTTP status other than 101
       (printed), or with an invalid handshake
  4    network or TLS error: connection refused, DNS, timeout, a certificate that does
       not verify (trust a CA with --cacert; the dev CA is printed by `wsskit cert`)
  130  interrupted (Ctrl-C); the connection is closed with 1000 first

examples:
  wsskit connect wss://127.0.0.1:8443/echo --cacert ~/.local/share/wsskit/certs/ca.pem
  printf '{{"op": "sub"}}\\n' | wsskit connect --json --wait 5 wss://example.com/feed"""

# RFC 9110 §5.1: a header name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")

# RFC 6455 §7.4.1 and the IANA registry: names for the status lines.
_CLOSE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "connection dropped without a Close frame",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
}

# Lines queued from standard input before reading pauses, and resumes.
_HIGH_WATER = 256
_LOW_WATER = 64


class _UsageError(Exception):
    """A bad combination of options: exit status 2."""


# -- argument parsing -----------------------------------------------------------------


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not _TOKEN.match(name):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    value = value.strip()
    if any(char in value for char in "\r\n\0"):
        raise argparse.ArgumentTypeError("a header value cannot hold CR, LF or NUL")
    return name, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError("a time is a number of seconds >= 0")
    return value


def _finite_seconds(text: str) -> float:
    value = _seconds(text)
    if math.isinf(value):
        raise argparse.ArgumentTypeError("a finite number of seconds, please")
    return value


def add_connect_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``connect`` sub-command to the ``wsskit`` command's sub-parsers."""
    from .cli import _size

    parser = commands.add_parser(
        "connect",
        help="an interactive client: send lines, print messages (like wscat or websocat)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL to connect to")
    parser.add_argument(
        "--json", action="store_true", help="pretty-print text messages that hold JSON (others as they are)"
    )
    parser.add_argument(
        "--binary",
        choices=("hex", "base64"),
        metavar="hex|base64",
        help="send each line as a binary message decoded from hex or base64, and show binary "
        "messages received in that encoding (default: lines go as text; binary is shown as hex)",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="at the end of input, wait this long for replies before closing (default 1; "
        "'inf': until the server closes)",
    )
    request = parser.add_argument_group("the opening handshake")
    request.add_argument(
        "--header",
        "-H",
        dest="headers",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    request.add_argument(
        "--subprotocol",
        dest="subprotocols",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable; the one chosen is printed)",
    )
    request.add_argument(
        "--origin", metavar="ORIGIN", help="send this Origin header, e.g. https://example.com"
    )
    request.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    tls = parser.add_argument_group("TLS (wss:// only)")
    tls.add_argument(
        "--cacert",
        metavar="PEM",
        help="trust the CAs in this file instead of the system's (the dev CA: see `wsskit cert`)",
    )
    tls.add_argument("--cert", metavar="PEM", help="client certificate (chain) for mutual TLS")
    tls.add_argument("--key", metavar="PEM", help="private key of --cert, unless it is in the same file")
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="DANGEROUS: do not verify the server's certificate or host name (for tests; warns on every use)",
    )
    behaviour = parser.add_argument_group("the connection")
    behaviour.add_argument(
        "--ping-interval",
        type=_finite_seconds,
        default=20.0,
        metavar="SECONDS",
        help="send a keepalive Ping this often; no Pong within as long closes with 1011 "
        "(default 20; 0: no keepalive)",
    )
    behaviour.add_argument(
        "--max-size",
        type=_size,
        default=2**20,
        metavar="SIZE",
        help="largest message accepted, e.g. 1MiB (default) or 'none'",
    )
    behaviour.add_argument(
        "--reconnect",
        action="store_true",
        help="when the connection is lost (1001, 1006, 1011-1014, network errors, 429, 5xx), "
        "connect again after a short random delay, growing up to 30 s; lines typed meanwhile "
        "are sent once connected",
    )


# -- TLS ------------------------------------------------------------------------------


def _insecure_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    """A client context that verifies nothing, for --insecure only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def _tls_context(args: argparse.Namespace, wsuri: WebSocketURI) -> ssl.SSLContext | None:
    """The context for ``wsuri`` from the TLS options; None for connect()'s default."""
    given = [
        option
        for option, value in (
            ("--cacert", args.cacert),
            ("--cert", args.cert),
            ("--key", args.key),
            ("--insecure", args.insecure),
        )
        if value
    ]
    if not wsuri.secure:
        if given:
            raise _UsageError(f"{', '.join(given)}: TLS options need a wss:// URL")
        return None
    if args.key is not None and args.cert is None:
        raise _UsageError("--key needs --cert")
    if args.insecure and args.cacert is not None:
        raise _UsageError("--insecure and --cacert exclude each other")
    # OpenSSL names no file in its errors ("No such file or directory"): try each first.
    for option, path in (("--cacert", args.cacert), ("--cert", args.cert), ("--key", args.key)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise _UsageError(f"cannot read the {option} file {path}: {exc.strerror or exc}") from None
    try:
        if args.insecure:
            return _insecure_context(args.cert, args.key)
        if args.cacert is not None or args.cert is not None:
            return client_context(args.cacert, args.cert, args.key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise _UsageError(_tls_files_error(args, exc)) from None
    return None


def _tls_files_error(args: argparse.Namespace, exc: OSError) -> str:
    """What went wrong loading readable TLS files, naming them."""
    reason = getattr(exc, "reason", None)
    detail = f" ({reason})" if reason else ""
    if args.cert is not None:
        try:  # which of the files is at fault: the CA file alone first
            if args.cacert is not None:
                client_context(args.cacert)
        except OSError:
            pass
        else:
            if args.key is None:
                return (
                    f"cannot load the client certificate {args.cert} without a key: the key is "
                    f"missing from it or does not match{detail}; pass --key KEY.pem (or put the key "
                    "in the --cert file)"
                )
            return (
                f"cannot load the client certificate {args.cert} with the key {args.key}: one is not "
                f"PEM, or the key does not match the certificate{detail}; check --cert and --key"
            )
    return f"cannot load the --cacert file {args.cacert}: no PEM certificate in it{detail}"


# -- standard input ---------------------------------------------------------------------


class _Input:
    """Lines from standard input, read without blocking the event loop.

    A pipe or socket is read by :meth:`asyncio.loop.connect_read_pipe`; a
    terminal or a regular file (which ``connect_read_pipe`` refuses, or
    which must stay blocking) by a daemon thread. Reading pauses while many
    lines wait to be sent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lines: deque[str] = deque()
        self._partial = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False
        self._room = threading.Event()  # the reader thread reads while set
        self._room.set()
        self._restore_blocking: int | None = None

    async def start(self) -> None:
        try:
            fd = sys.stdin.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, ValueError, OSError):  # no standard input at all
            self._feed_eof()
            return
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            try:
                await self._read_pipe(fd)
                return
            except (OSError, ValueError, NotImplementedError):  # an event loop without pipes
                self._restore()
        thread = threading.Thread(target=self._read_in_thread, args=(fd,), name="wsskit-stdin", daemon=True)
        thread.start()

    async def _read_pipe(self, fd: int) -> None:
        # The duplicate shares the file description: closing it leaves fd 0
        # alone, but O_NONBLOCK is shared, so close() restores blocking mode.
        if os.get_blocking(fd):
            self._restore_blocking = fd
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        try:
            self._transport, _ = await self._loop.connect_read_pipe(lambda: _PipeReader(self), pipe)
        except BaseException:
            pipe.close()
            raise

    def _read_in_thread(self, fd: int) -> None:
        # Raw os.read: no lock of sys.stdin's buffer is held while blocked, so
        # the interpreter can exit while this thread waits on a terminal.
        while True:
            self._room.wait()
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                self._loop.call_soon_threadsafe(self._feed if data else self._feed_eof, data)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return
            if not data:
                return

    def _feed(self, data: bytes) -> None:
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._push(bytes(line))
        if len(self._lines) >= _HIGH_WATER:
            self._pause()
        self._wake()

    def _feed_eof(self, _: bytes = b"") -> None:
        if self._partial:
            self._push(bytes(self._partial))
            self._partial.clear()
        self._eof = True
        self._wake()

    def _push(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        # Undecodable bytes survive as surrogates: a text message refuses them
        # with a message, a hex or base64 line never has them.
        self._lines.append(line.decode("utf-8", "surrogateescape"))

    def _pause(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()
        self._room.clear()

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        self._room.set()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> str | None:
        """Return the next line (without its end of line), or None at the end of input."""
        while not self._lines:
            if self._eof:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        if self._paused and len(self._lines) <= _LOW_WATER:
            self._resume()
        return line

    def unget(self, line: str) -> None:
        """Put back a line that could not be sent: it comes next."""
        self._lines.appendleft(line)

    @property
    def ended(self) -> bool:
        """Whether the end of input was reached and every line was taken."""
        return self._eof and not self._lines

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._restore()

    def _restore(self) -> None:
        if self._restore_blocking is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self._restore_blocking, True)
            self._restore_blocking = None


class _PipeReader(asyncio.Protocol):
    def __init__(self, lines: _Input) -> None:
        self._lines = lines

    def data_received(self, data: bytes) -> None:
        self._lines._feed(data)

    def eof_received(self) -> bool | None:
        self._lines._feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lines._feed_eof()


# -- output -------------------------------------------------------------------------------


class _Output:
    """Messages on standard output, status lines on standard error.

    On a terminal, received messages are marked ``< `` and a ``> `` prompt is
    shown when standard input is a terminal too; otherwise standard output
    carries the messages and nothing else.
    """

    def __init__(self) -> None:
        self.decorate = _isatty(sys.stdout)
        self.prompt = self.decorate and _isatty(sys.stdin)
        self.stderr_tty = _isatty(sys.stderr)
        self.broken = False  # standard output's reader went away
        self.live = False  # a connection is open: show the prompt again after a status line

    def message(self, text: str) -> None:
        """Print a message; raise :class:`BrokenPipeError` once if nobody reads any more."""
        if self.broken:
            return
        if self.decorate:
            text = (
                "\r\x1b[K< " + text.replace("\n", "\n  ") + "\n" + ("> " if self.prompt and self.live else "")
            )
        else:
            text += "\n"
        try:
            stream = sys.stdout.buffer
            stream.write(text.encode("utf-8", "replace"))
            stream.flush()
        except BrokenPipeError:
            self.broken = True
            # Keep the interpreter's final flush of stdout from failing again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise

    def status(self, text: str) -> None:
        """Print a status line on standard error."""
        if self.prompt and self.stderr_tty:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.write(f"wsskit: {text}\n")
        sys.stderr.flush()
        if self.prompt and self.live and not self.broken:
            sys.stdout.write("> ")
            sys.stdout.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _close_description(code: int | None, reason: str | None) -> str:
    if code is None:
        return "no close code"
    name = _CLOSE_NAMES.get(code)
    text = f"{code} ({name})" if name else str(code)
    return f"{text}: {reason}" if reason else text


def _display(wsuri: WebSocketURI) -> str:
    # No credentials, no query (it may carry a token).
    return f"{'wss' if wsuri.secure else 'ws'}://{wsuri.host_header}{wsuri.path.partition('?')[0]}"


# -- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """How a connection ended."""

    closed_here: bool  # this side started the closing handshake on purpose
    code: int | None
    reason: str | None


class _Client:
    def __init__(self, args: argparse.Namespace, wsuri: WebSocketURI, context: ssl.SSLContext | None) -> None:
        self.args = args
        self.wsuri = wsuri
        self.context = context
        self.out = _Output()
        self.binary: str | None = args.binary
        self.connection: ClientConnection | None = None
        self.closed_here = False
        self.interrupted = False
        self.work: asyncio.Task[int] | None = None
        self._ping_tasks: set[asyncio.Task[None]] = set()
        self._input: _Input | None = None

    # -- running ----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._input = _Input(loop)
        await self._input.start()
        sigint = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
            sigint = True
        self.work = asyncio.ensure_future(self._work())
        try:
            return await self.work
        except asyncio.CancelledError:
            if self.interrupted:
                return EXIT_INTERRUPTED
            raise
        finally:
            if sigint:
                loop.remove_signal_handler(signal.SIGINT)
            self._input.close()

    def _interrupt(self) -> None:
        # First Ctrl-C: close politely. A second one interrupts at once.
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        self.interrupted = True
        connection = self.connection
        if connection is not None and connection.state is State.OPEN:
            self.out.status("interrupted: closing")
            self._close_soon(connection, 1000, "")
        elif connection is None and self.work is not None:
            self.work.cancel()

    def _options(self) -> dict[str, Any]:
        args = self.args
        return {
            "ssl": self.context,
            "subprotocols": args.subprotocols or None,
            "additional_headers": args.headers or None,
            "origin": args.origin,
            "compression": None if args.no_compression else "deflate",
            "ping_interval": args.ping_interval or None,
            "ping_timeout": args.ping_interval or None,
            "max_size": args.max_size,
        }

    async def _work(self) -> int:
        uri = self.args.url
        if not self.args.reconnect:
            try:
                connection = await connect(uri, **self._options())
            except (HandshakeError, OSError, ValueError) as exc:
                return self._failed(exc)
            return self._exit_status(await self._session(connection))
        connections = connect(
            uri, reconnect=RECONNECT_POLICY, on_reconnecting=self._on_reconnecting, **self._options()
        ).__aiter__()
        outcome: _Outcome | None = None
        while True:
            try:
                connection = await connections.__anext__()
            except StopAsyncIteration:
                # The last connection ended with a close not worth a retry.
                assert outcome is not None
                return self._exit_status(outcome)
            except GiveUp as exc:
                self.out.status(f"error: {exc}")
                cause = exc.__cause__
                if isinstance(cause, ConnectionClosed):
                    return EXIT_CLOSED_ABNORMALLY
                return self._failed(cause) if isinstance(cause, Exception) else EXIT_NETWORK
            except (HandshakeError, OSError, ValueError) as exc:
                return self._failed(exc)
            outcome = await self._session(connection)
            if self.closed_here or self.interrupted or self._ended():
                return self._exit_status(outcome)

    def _ended(self) -> bool:
        return self._input is not None and self._input.ended

    def _on_reconnecting(self, attempt: int, delay: float, failure: BaseException) -> None:
        self.out.status(f"{_failure_text(failure)}; reconnecting in {delay:.1f} s (attempt {attempt})")

    def _failed(self, exc: Exception) -> int:
        """Report a connection that could not be opened; return the exit status."""
        target = _display(self.wsuri)
        if isinstance(exc, InvalidStatus):
            response = exc.response
            try:
                phrase = " " + http.HTTPStatus(response.status).phrase
            except ValueError:
                phrase = ""
            self.out.status(f"error: {target} refused the handshake: HTTP {response.status}{phrase}")
            body = response.body.decode("utf-8", "replace").strip()
            if body:
                self.out.status(f"  {body[:300]}")
            return EXIT_HANDSHAKE
        if isinstance(exc, HandshakeError):
            self.out.status(f"error: handshake with {target} failed: {exc}")
            for note in getattr(exc, "__notes__", ()):  # connect()'s advice (3.11+)
                self.out.status(f"  {note}")
            return EXIT_HANDSHAKE
        if isinstance(exc, ssl.SSLCertVerificationError):
            self.out.status(f"error: TLS with {target}: certificate not verified: {exc.verify_message}")
            self.out.status("  trust its CA with --cacert PEM (the dev CA: see `wsskit cert`)")
            return EXIT_NETWORK
        if isinstance(exc, ssl.SSLError):
            self.out.status(f"error: TLS with {target} failed: {exc.reason or exc}")
            hint = _tls_hint(exc)  # computed again: notes exist on 3.11+ only
            if hint is not None:
                self.out.status(f"  {hint}")
            return EXIT_NETWORK
        if isinstance(exc, OSError):  # TimeoutError included
            self.out.status(f"error: cannot connect to {target}: {_failure_text(exc)}")
            return EXIT_NETWORK
        if isinstance(exc, (InvalidURI, ValueError)):
            self.out.status(f"error: {exc}")
            return EXIT_USAGE
        raise exc

    def _exit_status(self, outcome: _Outcome) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if outcome.closed_here or outcome.code in (1000, 1001, 1005):
            return EXIT_OK
        return EXIT_CLOSED_ABNORMALLY

    # -- one connection ----------------------------------------------------------------

    async def _session(self, connection: ClientConnection) -> _Outcome:
        """Print what arrives and send what is read until the connection is closed."""
        self.connection = connection
        self.out.live = True
        details = [f"subprotocol {connection.subprotocol}"] if connection.subprotocol else []
        details += connection.extensions
        suffix = f" ({', '.join(details)})" if details else ""
        self.out.status(f"connected to {_display(self.wsuri)}{suffix}")
        if self.out.prompt:
            self.out.status("type /help for commands, Ctrl-D to close")
        printer = asyncio.ensure_future(self._print_messages(connection))
        sender = asyncio.ensure_future(self._send_input(connection))
        try:
            await asyncio.wait({printer, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and sender.exception() is not None:
                self._close_soon(connection, 1011, "client error")
                sender.result()  # raise it: a bug
            await printer  # returns once the connection is closed
        finally:
            for task in (printer, sender, *self._ping_tasks):
                task.cancel()
            await asyncio.gather(printer, sender, *self._ping_tasks, return_exceptions=True)
            await connection.wait_closed()
            self.connection = None
            self.out.live = False
        code, reason = connection.close_code, connection.close_reason
        closed_here = self.closed_here
        who = "closed" if closed_here else "closed by the server"
        if code == 1006:
            who = "connection lost"
        self.out.status(f"{who}: {_close_description(code, reason)}")
        return _Outcome(closed_here, code, reason)

    async def _print_messages(self, connection: ClientConnection) -> None:
        while True:
            try:
                message = await connection.recv()
            except ConnectionClosed:
                return
            try:
                self.out.message(self._render(message))
            except BrokenPipeError:
                # Nobody reads what arrives: stop, as a pipe's writer does.
                self._close_soon(connection, 1000, "")

    def _render(self, message: str | bytes) -> str:
        if isinstance(message, str):
            if self.args.json:
                try:
                    return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
                except ValueError:
                    pass
            return message
        text = base64.b64encode(message).decode("ascii") if self.binary == "base64" else message.hex()
        return f"[binary, {len(message)} bytes] {text}" if self.out.decorate else text

    async def _send_input(self, connection: ClientConnection) -> None:
        assert self._input is not None
        while True:
            line = await self._input.get()
            if line is None:
                await self._close_after_wait(connection)
                return
            if line.startswith("/") and not line.startswith("//"):
                if not await self._command(connection, line):
                    return
                continue
            message = self._encode(line[1:] if line.startswith("//") else line)
            if message is None:
                continue
            try:
                await connection.send(message)
            except ConnectionClosed:
                self._input.unget(line)  # for the next connection, with --reconnect
                return

    def _encode(self, line: str) -> str | bytes | None:
        """The message a line stands for; None (and a status line) if it cannot be sent."""
        if self.binary is None:
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                self.out.status("error: a line that is not valid UTF-8 cannot be a text message; not sent")
                return None
            return line
        try:
            if self.binary == "hex":
                return bytes.fromhex(line)
            return base64.b64decode(line.strip(), validate=True)
        except (ValueError, binascii.Error):
            self.out.status(f"error: not {self.binary}: {line[:60]!r}; not sent")
            return None

    async def _close_after_wait(self, connection: ClientConnection) -> None:
        # Replies may still be on their way: give them --wait seconds, unless
        # the server closes first.
        wait: float = self.args.wait
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(connection.wait_closed(), None if math.isinf(wait) else wait)
        if connection.state is State.OPEN:
            self.closed_here = True
            await connection.close(1000)

    async def _command(self, connection: ClientConnection, line: str) -> bool:
        """Run a slash command; return False once the connection is closing."""
        name, _, rest = line.partition(" ")
        if name == "/help":
            self.out.status("commands:\n" + _COMMANDS)
            return True
        if name == "/ping":
            try:
                waiter = connection.ping(rest.encode("utf-8", "surrogateescape") if rest else None)
            except (InvalidState, LocalProtocolError) as exc:
                self.out.status(f"error: {exc}")
                return True
            except ConnectionClosed:
                return False
            task = asyncio.ensure_future(self._report_pong(waiter))
            self._ping_tasks.add(task)
            task.add_done_callback(self._ping_tasks.discard)
            return True
        if name == "/close":
            code_text, _, reason = rest.strip().partition(" ")
            try:
                code = int(code_text) if code_text else 1000
            except ValueError:
                self.out.status(f"error: not a close code: {code_text!r} (usage: /close [CODE [REASON]])")
                return True
            if connection.state is not State.OPEN:
                return False
            self.closed_here = True
            try:
                await connection.close(code, reason.strip())
            except LocalProtocolError as exc:
                self.closed_here = False
                self.out.status(f"error: {exc}")
                return True
            return False
        self.out.status(f"error: unknown command {name} (see /help; send a line that starts with / as //...)")
        return True

    async def _report_pong(self, waiter: asyncio.Future[float]) -> None:
        try:
            latency = await waiter
        except ConnectionClosed:
            return
        self.out.status(f"pong: round trip {latency * 1000:.2f} ms")

    def _close_soon(self, connection: ClientConnection, code: int, reason: str) -> None:
        if connection.state is State.OPEN:
            self.closed_here = True
        task = asyncio.ensure_future(connection.close(code, reason))
        self._ping_tasks.add(task)
        task.add_done_callback(self._ping_tasks.discard)


def _failure_text(failure: BaseException) -> str:
    if isinstance(failure, ConnectionClosed):
        return f"connection closed: {_close_description(failure.code, failure.reason)}"
    if isinstance(failure, InvalidStatus):
        return f"HTTP {failure.response.status}"
    if isinstance(failure, ConnectionRefusedError):
        return "connection refused"  # asyncio's strerror lists every address tried
    if isinstance(failure, TimeoutError):
        return str(failure) or "timed out"
    if isinstance(failure, socket.gaierror):
        return f"cannot resolve the host name: {failure.strerror}"
    if isinstance(failure, OSError) and failure.strerror:
        return failure.strerror
    return str(failure) or type(failure).__name__


def run_connect(args: argparse.Namespace) -> int:
    """Run ``wsskit connect`` with parsed arguments; return the exit status."""
    try:
        wsuri = parse_uri(args.url)
        context = _tls_context(args, wsuri)
    except (InvalidURI, _UsageError) as exc:
        print(f"wsskit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    client = _Client(args, wsuri, context)
    try:
        return loops.run(client.run())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
