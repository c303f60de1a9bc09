"""The ``wsskit`` command: ``serve``, ``connect`` and ``cert``."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._sizes import SIZE_EXAMPLES, parse_size
from .asyncio import loops

__all__ = ["main"]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        # A worker of --workers N says which one it is: wsskit[2]: ...
        worker = os.environ.get("WSSKIT_WORKER")
        prefix = f"wsskit[{worker}]" if worker else "wsskit"
        if record.levelno >= logging.WARNING:
            return f"{prefix}: {record.levelname.lower()}: {message}"
        return f"{prefix}: {message}"


class _JsonFormatter(logging.Formatter):
    # One JSON object per line, for log collectors (--log-format json).
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        worker = os.environ.get("WSSKIT_WORKER")
        if worker:
            entry["worker"] = worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _Formatter("%(message)s"))
    root = logging.getLogger("wsskit")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# Words that turn a limit off, besides 0 for a rate.
_OFF_WORDS = ("none", "unlimited")


def _bytes(text: str) -> int:
    """Parse a number of bytes >= 0, with an optional unit (64KiB, 1MiB, 16M, 2kb).

    Raises argparse.ArgumentTypeError (argparse prints its message) for anything else.
    """
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int | None:
    """Parse a size like 1048576, 64KiB, 1MiB, 16M, or 'none' (no limit).

    Raises argparse.ArgumentTypeError for something else, or a size of 0.
    """
    if text.strip().lower() in _OFF_WORDS:
        return None
    size = _bytes(text)
    if size <= 0:
        raise argparse.ArgumentTypeError(
            f"a size is a positive number of bytes ({SIZE_EXAMPLES}), not {text!r}"
        )
    return size


def _byte_rate(text: str) -> int:
    """Parse a rate in bytes per second like 16MiB; 0 or 'none' turns the limit off (0).

    Raises argparse.ArgumentTypeError for something else.
    """
    if text.strip().lower() in _OFF_WORDS:
        return 0
    return _bytes(text)


def _rate(text: str) -> float:
    """Parse a rate per second: a finite number >= 0; 0 or 'none' turns the limit off (0).

    Raises argparse.ArgumentTypeError for something else.
    """
    if text.strip().lower() in _OFF_WORDS:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (a number per second; 0 or 'none': no limit)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"a rate is a finite number >= 0 (0 or 'none': no limit), not {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    """Parse a duration in seconds: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("a duration is a finite number of seconds >= 0")
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

    # No defaults here: an option left out keeps the config file's value, or
    # ServeConfig's default (the values the help texts quote).
    serve = commands.add_parser(
        "serve",
        help="run a wss:// server with an echo endpoint at /echo",
        argument_default=argparse.SUPPRESS,
    )
    serve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file with these settings and more (namespaces, auth, API tokens); options override it",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443)")
    serve.add_argument(
        "--cert", type=Path, help="certificate chain (PEM); default: the local dev certificate"
    )
    serve.add_argument("--key", type=Path, help="private key of --cert (PEM)")
    serve.add_argument("--no-tls", action="store_true", help="serve plain ws:// (no encryption)")
    serve.add_argument(
        "--profile",
        choices=("intermediate", "modern"),
        help="Mozilla TLS profile (default intermediate)",
    )
    serve.add_argument(
        "--max-size",
        type=_size,
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
        help="with --client-ca: whether clients must show a certificate (default required)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="also accept WebSocket requests from this browser origin (repeatable; its own is allowed)",
    )
    serve.add_argument(
        "--backplane",
        metavar="URL",
        help="where channels live: memory:// (default, this process), redis://HOST:PORT, nats://HOST:PORT",
    )
    serve.add_argument(
        "--api-token",
        action="append",
        metavar="TOKEN",
        help="enable POST /api/publish for this bearer token (repeatable; or $WSSKIT_API_TOKEN, "
        "comma-separated); at least 16 characters",
    )
    limits = serve.add_argument_group("rate limits (0 or 'none' turns a rate off; caps stay at least 1)")
    limits.add_argument(
        "--connection-rate",
        type=_rate,
        metavar="N",
        help="new connections per second from one IP, bursts of 2N (default 50); over it: 429",
    )
    limits.add_argument(
        "--max-connections-per-ip",
        type=_count,
        metavar="N",
        help="connections open at once from one IP (default 1000); over it: 503",
    )
    limits.add_argument(
        "--max-connections",
        type=_count,
        metavar="N",
        help="connections open at once in total (default 10000); over it: 503",
    )
    limits.add_argument(
        "--message-rate",
        type=_rate,
        metavar="N",
        help="messages per second one connection may send (default 1000); over it: close 1008",
    )
    limits.add_argument(
        "--byte-rate",
        type=_byte_rate,
        metavar="SIZE",
        help="bytes per second one connection may send, e.g. 16MiB (default); over it: close 1008",
    )
    limits.add_argument(
        "--ping-rate",
        type=_rate,
        metavar="N",
        help="Pings answered per second per connection (default 10); more get no Pong",
    )
    behind = serve.add_argument_group("behind a load balancer")
    behind.add_argument(
        "--proxy-protocol",
        nargs="?",
        const="v1v2",
        choices=("v1", "v2", "v1v2"),
        help="read a PROXY protocol header (HAProxy send-proxy-v2, nginx proxy_protocol) first on "
        "every connection: its client address counts for limits and logs (default versions: v1v2)",
    )
    behind.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        help="with --proxy-protocol: a network the load balancers connect from (repeatable); "
        "connections from elsewhere are closed",
    )
    scale = serve.add_argument_group("workers and graceful drain (on SIGTERM or SIGINT)")
    scale.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="worker processes serving the port (default 1: this process serves); dead ones are restarted",
    )
    scale.add_argument(
        "--drain-delay",
        type=_seconds,
        metavar="SECONDS",
        help="answer /readyz with 503 this long before closing the listening socket (default 0; "
        "behind a load balancer: more than its check interval times its fall count)",
    )
    scale.add_argument(
        "--drain-window",
        type=_seconds,
        metavar="SECONDS",
        help="spread the closing of open connections over this long (default 10)",
    )
    scale.add_argument(
        "--drain-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="abort connections still open this long after the signal, and exit (default 30)",
    )
    # Internal: set by the --workers supervisor on the workers it starts.
    scale.add_argument("--worker-of", type=int, metavar="PID", help=argparse.SUPPRESS)
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines as text (default) or one JSON object per line",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        help="event loop: auto (default, or $WSSKIT_LOOP) takes uvloop when installed (wsskit[speed])",
    )

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


# serve's options and the ServeConfig fields they set.
_SERVE_OPTIONS = {
    "host": "host",
    "port": "port",
    "cert": "certfile",
    "key": "keyfile",
    "profile": "profile",
    "max_size": "max_size",
    "cert_dir": "cert_dir",
    "client_ca": "client_ca",
    "client_cert": "client_cert",
    "connection_rate": "connection_rate",
    "max_connections_per_ip": "max_connections_per_ip",
    "max_connections": "max_connections",
    "message_rate": "message_rate",
    "ping_rate": "ping_rate",
    "backplane": "backplane",
    "proxy_protocol": "proxy_protocol",
    "workers": "workers",
    "drain_delay": "drain_delay",
    "drain_window": "drain_window",
    "drain_timeout": "drain_timeout",
}


def _serve_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """The ServeConfig of ``wsskit serve``: the config file, then the environment, then the options.

    Raises ValueError (ConfigError) for a bad file or a bad combination.
    """
    from .app import ServeConfig
    from .app.settings import API_TOKEN_ENV, api_access, load_file, merge

    given = vars(args)
    file_values = load_file(given["config"], environ) if "config" in given else {}
    overrides: dict[str, Any] = {
        field: given[option] for option, field in _SERVE_OPTIONS.items() if option in given
    }
    if given.get("no_tls"):
        overrides["tls"] = False
    if "allow_origin" in given:
        overrides["origins"] = tuple(given["allow_origin"])
    if "trusted_proxy" in given:
        overrides["trusted_proxies"] = tuple(given["trusted_proxy"])
    if "byte_rate" in given:
        overrides["byte_rate"] = given["byte_rate"]
    # API tokens: the options, else the environment, else the file.
    tokens = given.get("api_token") or environ.get(API_TOKEN_ENV, "").split(",")
    access = api_access(token.strip() for token in tokens)
    if access is not None:
        overrides["api"] = access
    values = merge(file_values, overrides)
    if values.get("keyfile") is not None and values.get("certfile") is None:
        raise ValueError("--key needs --cert")
    if values.get("tls") is False and values.get("certfile") is not None:
        raise ValueError("--no-tls and --cert exclude each other")
    _check_proxy_protocol(values)
    if values.get("drain_timeout") == 0:
        raise ValueError("--drain-timeout must be more than 0")
    return ServeConfig(**values)


def _check_proxy_protocol(values: Mapping[str, Any]) -> None:
    # Both or neither: a PROXY header is only believed from known proxies.
    from .asyncio.proxy_header import trusted_networks

    trusted = values.get("trusted_proxies") or ()
    trusted_networks(trusted)  # ValueError naming a bad network
    if values.get("proxy_protocol") and not trusted:
        raise ValueError("--proxy-protocol needs --trusted-proxy (or trusted_proxies in the config file)")
    if trusted and not values.get("proxy_protocol"):
        raise ValueError("--trusted-proxy is used only with --proxy-protocol")


def _readable(option: str, path: Path) -> None:
    # OpenSSL's own errors name no file ("[SSL] PEM lib"): open it first.
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read the {option} file {path}: {exc.strerror or exc}") from None


def _check_tls_files(config: Any) -> None:
    """Load the certificate, key and client CA of ``config`` once, before serving.

    Raises ValueError naming the file and what to do: a missing or unreadable
    file, a key that is missing or does not match the certificate, a file
    that holds no certificate.
    """
    import ssl

    if not config.tls or config.certfile is None:
        return  # plain ws://, or the dev certificate (made and checked by wsskit itself)
    cert, key = Path(config.certfile), config.keyfile
    _readable("--cert", cert)
    if key is not None:
        _readable("--key", Path(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        # "PEM lib" (no reason) says little: a missing key, or a file that is not PEM.
        detail = f" ({exc.reason})" if exc.reason else ""
        if key is None:
            raise ValueError(
                f"cannot load the certificate {cert} without a key: the key is missing from it or "
                f"does not match{detail}; pass --key KEY.pem (or put the key in the --cert file)"
            ) from None
        raise ValueError(
            f"cannot load the certificate {cert} with the key {key}: one is not PEM, or the key "
            f"does not match the certificate{detail}; check --cert and --key"
        ) from None
    if config.client_ca is not None:
        _readable("--client-ca", Path(config.client_ca))
        try:
            context.load_verify_locations(cafile=config.client_ca)
        except ssl.SSLError as exc:
            detail = f" ({exc.reason})" if exc.reason else ""
            raise ValueError(
                f"cannot load the client CA {config.client_ca}: no PEM certificate in it{detail}"
            ) from None


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .app import run

    try:
        config = _serve_config(args, os.environ)
        _check_tls_files(config)
    except ValueError as exc:
        print(f"wsskit: error: {exc}", file=sys.stderr)
        return 2
    try:
        loop = loops.loop_name(getattr(args, "loop", None))
        logging.getLogger("wsskit.app").info("event loop: %s", loop)
        worker_of = getattr(args, "worker_of", None)
        if worker_of is not None:
            from .app.workers import serve_worker

            loops.run(serve_worker(config, worker_of), loop=loop)
        elif config.workers > 1:
            from .app.workers import supervise

            return supervise(config, argv)
        else:
            loops.run(run(config), loop=loop)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "connect":
        from .cli_connect import run_connect

        return run_connect(args)
    if args.command == "serve":
        _setup_logging(args.log_level, args.log_format)
        return _serve(args, argv)
    _setup_logging("info")
    return _cert(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
