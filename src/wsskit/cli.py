"""The ``wsskit`` command: ``serve``, ``connect`` and ``cert``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["main"]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"wsskit: {record.levelname.lower()}: {message}"
        return f"wsskit: {message}"


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    root = logging.getLogger("wsskit")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _size(text: str) -> int | None:
    """Parse a size like 1048576, 64KiB, 1MiB, 16M, or 'none' (no limit)."""
    value = text.strip().lower()
    if value in ("none", "unlimited"):
        return None
    units = {"kib": 1024, "kb": 1000, "k": 1024, "mib": 1024**2, "mb": 1000**2, "m": 1024**2, "gib": 1024**3}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("a size is a positive number of bytes")
    return number


def _rate(text: str) -> float:
    """Parse a rate per second: a finite number >= 0 (0 turns the limit off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("a rate is a finite number >= 0 (0: no limit)")
    return value


def _count(text: str) -> int:
    """Parse a cap: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a cap is at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsskit", description="WebSocket over TLS, secure by default.")
    parser.add_argument("--version", action="version", version=f"wsskit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a wss:// server with an echo endpoint at /echo")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8443, help="port to listen on (default 8443)")
    serve.add_argument(
        "--cert", type=Path, help="certificate chain (PEM); default: the local dev certificate"
    )
    serve.add_argument("--key", type=Path, help="private key of --cert (PEM)")
    serve.add_argument("--no-tls", action="store_true", help="serve plain ws:// (no encryption)")
    serve.add_argument(
        "--profile",
        choices=("intermediate", "modern"),
        default="intermediate",
        help="Mozilla TLS profile (default intermediate)",
    )
    serve.add_argument(
        "--max-size",
        type=_size,
        default=2**20,
        help="largest message accepted, e.g. 1MiB (default) or 'none'",
    )
    serve.add_argument(
        "--cert-dir", type=Path, help="where the dev CA lives (default: the user's data folder)"
    )
    serve.add_argument(
        "--client-ca", type=Path, help="mutual TLS: the CA that client certificates must chain to"
    )
    serve.add_argument(
        "--client-cert",
        choices=("required", "optional"),
        default="required",
        help="with --client-ca: whether clients must show a certificate (default required)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept WebSocket requests from this browser origin (repeatable; its own is allowed)",
    )
    serve.add_argument(
        "--backplane",
        default="memory://",
        metavar="URL",
        help="where channels live: memory:// (default, this process), redis://HOST:PORT, nats://HOST:PORT",
    )
    limits = serve.add_argument_group("rate limits (0 turns a rate limit off)")
    limits.add_argument(
        "--connection-rate",
        type=_rate,
        default=50.0,
        metavar="N",
        help="new connections per second from one IP, bursts of 2N (default 50); over it: 429",
    )
    limits.add_argument(
        "--max-connections-per-ip",
        type=_count,
        default=1000,
        metavar="N",
        help="connections open at once from one IP (default 1000); over it: 503",
    )
    limits.add_argument(
        "--max-connections",
        type=_count,
        default=10_000,
        metavar="N",
        help="connections open at once in total (default 10000); over it: 503",
    )
    limits.add_argument(
        "--message-rate",
        type=_rate,
        default=1000.0,
        metavar="N",
        help="messages per second one connection may send (default 1000); over it: close 1008",
    )
    limits.add_argument(
        "--byte-rate",
        type=_size,
        default=16 * 2**20,
        metavar="SIZE",
        help="bytes per second one connection may send, e.g. 16MiB (default) or 'none'; over it: close 1008",
    )
    limits.add_argument(
        "--ping-rate",
        type=_rate,
        default=10.0,
        metavar="N",
        help="Pings answered per second per connection (default 10); more get no Pong",
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    cert = commands.add_parser("cert", help="make or show the local development CA and certificate")
    cert.add_argument("--dir", type=Path, help="where the dev CA lives (default: the user's data folder)")
    cert_commands = cert.add_subparsers(dest="cert_command")
    trust = cert_commands.add_parser(
        "trust", help="how to trust the dev CA (--install: add it to this system)"
    )
    trust.add_argument("--install", action="store_true", help="install into the system trust store (root)")
    client = cert_commands.add_parser("client", help="issue a client certificate signed by the dev CA")
    client.add_argument("name", help="the client's name (certificate subject)")
    # Imported here: cli_connect uses this module's parsers (_size).
    from .cli_connect import add_connect_parser

    add_connect_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .app import ServeConfig, run

    if args.key is not None and args.cert is None:
        print("wsskit: error: --key needs --cert", file=sys.stderr)
        return 2
    if args.no_tls and args.cert is not None:
        print("wsskit: error: --no-tls and --cert exclude each other", file=sys.stderr)
        return 2
    config = ServeConfig(
        host=args.host,
        port=args.port,
        tls=not args.no_tls,
        certfile=args.cert,
        keyfile=args.key,
        max_size=args.max_size,
        cert_dir=args.cert_dir,
        profile=args.profile,
        origins=tuple(args.allow_origin),
        client_ca=args.client_ca,
        client_cert=args.client_cert,
        connection_rate=args.connection_rate,
        max_connections_per_ip=args.max_connections_per_ip,
        max_connections=args.max_connections,
        message_rate=args.message_rate,
        byte_rate=args.byte_rate or 0,
        ping_rate=args.ping_rate,
        backplane=args.backplane,
    )
    try:
        asyncio.run(run(config))
    except ValueError as exc:  # a malformed --allow-origin or --backplane
        print(f"wsskit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wsskit: error: cannot serve on {config.url()}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while draining
        return 130
    return 0


def _cert(args: argparse.Namespace) -> int:
    from . import certs

    paths, created = certs.ensure_dev_certificates(args.dir)
    if args.cert_command == "trust":
        if args.install:
            try:
                print(certs.install_trust(paths.ca_cert))
            except PermissionError as exc:
                print(f"wsskit: error: {exc}", file=sys.stderr)
                return 1
            return 0
        print(certs.trust_instructions(paths.ca_cert))
        return 0
    if args.cert_command == "client":
        cert_path, key_path = certs.issue_client_certificate(args.name, args.dir)
        print(f"client certificate: {cert_path}\nclient key:         {key_path}")
        return 0
    print(f"{'created' if created else 'existing'} development CA in {paths.directory}")
    print(f"CA certificate:     {paths.ca_cert}")
    print(f"server certificate: {paths.cert}")
    print(f"server key:         {paths.key}")
    info = certs.certificate_info(paths.cert)
    for field in ("subject", "sans", "not_after", "sha256"):
        if field in info:
            print(f"  {field}: {info[field]}")
    print(f"trust it with:  --cacert {paths.ca_cert}   (or: wsskit cert trust)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wsskit`` command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "connect":
        from .cli_connect import run_connect

        return run_connect(args)
    if args.command == "serve":
        _setup_logging(args.log_level)
        return _serve(args)
    _setup_logging("info")
    return _cert(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
