"""The wsskit server the bad-input campaign attacks, run as a subprocess.

``python -m tests.security.campaign_server`` makes throwaway certificates in a
temporary folder, starts its listeners on free ports of 127.0.0.1 and prints
one JSON line on stdout when they accept connections: the ports, the files a
client needs (the CA, client certificates) and the secrets it may use to mint
tokens. It logs at DEBUG to stderr, which the tests read to check that no
hostile input made the server log an ERROR or a traceback, and that no token
ever reached the log. SIGTERM (or SIGINT) closes every listener and exits 0.

Listeners, each a ``wsskit.asyncio.serve`` over TLS with compression on:

``main``
    ``/echo`` echoes; ``/private`` needs a bearer token (an HS256 JWT or a
    static token; an AuthGuard on that path only) and then echoes after a
    greeting naming the subject; ``/mark`` answers 204 and logs the ``id``
    of its query (a barrier in the log, see ``campaign.py``); ``/stats``
    answers 200 with the number of open connections per listener as JSON;
    ``/slow`` echoes after a guard that takes half a second; any other path
    answers 404. Every WebSocket request goes through an
    OriginPolicy (``https://app.example`` allowed, no Origin allowed) and a
    generous connection rate limiter.
``mtls``
    requires a client certificate from the campaign CA; ``/mtls`` only lets
    alice's certificate in (403 for others) and greets it by subject,
    ``/echo`` echoes.
``limited``
    tight rate limits for the rate-limit cases, which connect from their own
    loopback addresses (127.0.0.x) so that their buckets are their own.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wsskit import tls
from wsskit.asyncio import Server, ServerConnection, serve
from wsskit.certs import DevCertificates, ensure_dev_certificates, issue_client_certificate
from wsskit.guards import ConnectionRateLimiter, MessageRateLimiter, OriginPolicy, PingFloodGuard
from wsskit.guards.auth import (
    AuthChain,
    AuthGuard,
    ClientCertificateAuthenticator,
    JWTAuthenticator,
    StaticTokenAuthenticator,
)
from wsskit.protocol.events import Reject, Request
from wsskit.protocol.headers import Headers

logger = logging.getLogger("campaign")

# Small limits, so that hostile inputs hit them quickly.
MAX_SIZE = 2**20
OPEN_TIMEOUT = 2.0
WRITE_TIMEOUT = 2.0
CLOSE_TIMEOUT = 1.0

# How long the guard of /slow takes.
SLOW_GUARD = 0.5

ALLOWED_ORIGIN = "https://app.example"
JWT_AUDIENCE = "campaign-api"
JWT_ISSUER = "https://issuer.example"
REALM = "campaign"
SUBPROTOCOL = "app.v1"
ALLOWED_CLIENT = "alice"

# The tight limits of the "limited" listener (the tests read them from the JSON line).
LIMITED = {
    "per_ip_rate": 0.5,
    "per_ip_burst": 4,
    "max_per_ip": 3,
    "max_total": 12,
    "max_pending_handshakes": 5,
    "busy_retry_after": 7.0,
    "messages_per_second": 1.0,
    "message_burst": 5,
    "bytes_per_second": 64 * 1024,
    "byte_burst": MAX_SIZE,
    "pings_per_second": 1.0,
    "ping_burst": 5,
}

# The "main" listener's limiter only stops a runaway test.
GENEROUS = {"per_ip_rate": 1000.0, "per_ip_burst": 1000, "max_per_ip": 500, "max_total": 1000}


def _expired_client_certificate(certs: DevCertificates, name: str) -> tuple[Path, Path]:
    """A clientAuth certificate from the dev CA whose validity ended yesterday."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = certs.directory / f"client-{name}-expired.pem"
    key_path = certs.directory / f"client-{name}-expired-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def _handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    if ws.request.path in ("/private", "/mtls"):
        await ws.send(f"hello {ws.identity.subject}")
    await _echo(ws)


def _only_on(path: str, guard: AuthGuard) -> Callable[[ServerConnection, Request], Awaitable[None]]:
    async def check(connection: ServerConnection, request: Request) -> None:
        if request.path == path:
            await guard(connection, request)

    return check


def _slow_on(path: str, delay: float) -> Callable[[ServerConnection, Request], Awaitable[None]]:
    # A guard that takes its time, like one asking an identity provider.
    async def check(connection: ServerConnection, request: Request) -> None:
        if request.path == path:
            await asyncio.sleep(delay)

    return check


def _plain(status: int, body: bytes = b"") -> Reject:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")]) if body else Headers()
    return Reject(status, headers, body)


class Campaign:
    """The listeners and what the tests need to know about them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.certs, _ = ensure_dev_certificates(workdir / "certs")
        other, _ = ensure_dev_certificates(workdir / "other-ca")
        alice = issue_client_certificate(ALLOWED_CLIENT, self.certs.directory)
        mallory = issue_client_certificate("mallory", self.certs.directory)
        eve = issue_client_certificate("eve", other.directory)
        expired = _expired_client_certificate(self.certs, ALLOWED_CLIENT)
        self.client_certs = {
            "alice": alice,
            "mallory": mallory,
            "untrusted": eve,
            "expired": expired,
            # The server's own leaf: trusted CA, but serverAuth only.
            "server_usage": (self.certs.cert, self.certs.key),
        }
        self.jwt_secret = secrets.token_bytes(32)
        self.static_token = secrets.token_urlsafe(32)
        self.servers: dict[str, Server] = {}

    def _process_request(self, name: str) -> Callable[[ServerConnection, Request], Reject | None]:
        paths = {"main": ("/echo", "/private", "/slow"), "mtls": ("/echo", "/mtls"), "limited": ("/echo",)}[
            name
        ]

        def process_request(connection: ServerConnection, request: Request) -> Reject | None:
            if request.path == "/mark":
                logger.info("campaign mark %s", request.query.get("id", ""))
                return _plain(204)
            if request.path == "/stats":
                stats = {key: len(server.connections) for key, server in self.servers.items()}
                return _plain(200, json.dumps(stats).encode())
            # A target that is no path is the library's to refuse (400).
            if request.target.startswith("/") and request.path not in paths:
                return _plain(404, b"Not Found\n")
            return None

        return process_request

    def _common(self, name: str) -> dict[str, Any]:
        return {
            "compression": "deflate",
            "max_size": MAX_SIZE,
            "open_timeout": OPEN_TIMEOUT,
            "write_timeout": WRITE_TIMEOUT,
            "close_timeout": CLOSE_TIMEOUT,
            "ping_interval": None,
            "subprotocols": [SUBPROTOCOL],
            "process_request": self._process_request(name),
        }

    async def start(self) -> dict[str, Any]:
        certs = self.certs
        origin = OriginPolicy([ALLOWED_ORIGIN], allow_missing=True)
        tokens = AuthChain(
            [
                JWTAuthenticator(
                    key=self.jwt_secret,
                    algorithms=["HS256"],
                    audience=JWT_AUDIENCE,
                    issuer=JWT_ISSUER,
                    required_claims=("exp", "sub"),
                ),
                StaticTokenAuthenticator({self.static_token: "robot"}),
            ],
            realm=REALM,
        )
        main_limiter = ConnectionRateLimiter(
            GENEROUS["per_ip_rate"],
            GENEROUS["per_ip_burst"],
            max_per_ip=int(GENEROUS["max_per_ip"]),
            max_total=int(GENEROUS["max_total"]),
        )
        self.servers["main"] = await serve(
            _handler,
            "127.0.0.1",
            0,
            ssl=tls.server_context(certs.cert, certs.key),
            guards=[origin, _only_on("/private", AuthGuard(tokens)), _slow_on("/slow", SLOW_GUARD)],
            connection_limiter=main_limiter,
            **self._common("main"),
        )

        # Only alice's certificate: its subject holds the machine's user name, so pin the fingerprint.
        alice = x509.load_pem_x509_certificate(self.client_certs["alice"][0].read_bytes())
        certificates = AuthChain(
            [ClientCertificateAuthenticator(allowed_fingerprints=[alice.fingerprint(hashes.SHA256()).hex()])],
            realm=REALM,
        )
        self.servers["mtls"] = await serve(
            _handler,
            "127.0.0.1",
            0,
            ssl=tls.server_context(certs.cert, certs.key, client_ca=certs.ca_cert, client_cert="required"),
            guards=[origin, _only_on("/mtls", AuthGuard(certificates))],
            **self._common("mtls"),
        )

        limits = LIMITED
        self.servers["limited"] = await serve(
            _handler,
            "127.0.0.1",
            0,
            ssl=tls.server_context(certs.cert, certs.key),
            guards=[origin],
            connection_limiter=ConnectionRateLimiter(
                limits["per_ip_rate"],
                limits["per_ip_burst"],
                max_per_ip=int(limits["max_per_ip"]),
                max_total=int(limits["max_total"]),
                max_pending_handshakes=int(limits["max_pending_handshakes"]),
                busy_retry_after=limits["busy_retry_after"],
            ),
            message_limiter=lambda: MessageRateLimiter(
                limits["messages_per_second"],
                limits["bytes_per_second"],
                message_burst=limits["message_burst"],
                byte_burst=limits["byte_burst"],
            ),
            ping_limiter=lambda: PingFloodGuard(limits["pings_per_second"], limits["ping_burst"]),
            **self._common("limited"),
        )

        return {
            "ports": {name: server.sockets[0].getsockname()[1] for name, server in self.servers.items()},
            "ca": str(certs.ca_cert),
            "client_certs": {name: [str(cert), str(key)] for name, (cert, key) in self.client_certs.items()},
            "jwt_secret": self.jwt_secret.hex(),
            "jwt_audience": JWT_AUDIENCE,
            "jwt_issuer": JWT_ISSUER,
            "realm": REALM,
            "static_token": self.static_token,
            "allowed_origin": ALLOWED_ORIGIN,
            "subprotocol": SUBPROTOCOL,
            "max_size": MAX_SIZE,
            "open_timeout": OPEN_TIMEOUT,
            "write_timeout": WRITE_TIMEOUT,
            "close_timeout": CLOSE_TIMEOUT,
            "slow_guard": SLOW_GUARD,
            "limited": limits,
        }

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()
        for server in self.servers.values():
            await server.wait_closed()


async def _main() -> None:
    with tempfile.TemporaryDirectory(prefix="wsskit-campaign-") as workdir:
        campaign = Campaign(Path(workdir))
        info = await campaign.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        await stop.wait()
        logger.info("campaign server stopping")
        await campaign.close()


def main() -> None:
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    asyncio.run(_main())


if __name__ == "__main__":
    main()
