"""Mutual TLS end to end: the handler sees the client certificate the handshake verified."""

from __future__ import annotations

import ssl

import pytest

from tests.asyncio.raw import port_of
from wsskit import tls
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.certs import DevCertificates, issue_client_certificate
from wsskit.exceptions import InvalidHandshake
from wsskit.tls import PeerCertificate


async def report_peer(ws: ServerConnection) -> None:
    certificate = ws.peer_certificate
    await ws.send("none" if certificate is None else f"{certificate.subject}|{','.join(certificate.sans)}")


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_handler_sees_the_verified_client_identity(certificates: DevCertificates, mode: str) -> None:
    cert, key = issue_client_certificate("alice@example.org", certificates.directory)
    server_ssl = tls.server_context(
        certificates.cert,
        certificates.key,
        client_ca=certificates.ca_cert,
        client_cert=mode,  # type: ignore[arg-type]
    )
    async with serve(report_peer, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        client_ssl = tls.client_context(certificates.ca_cert, cert, key)
        async with connect(uri, ssl=client_ssl, ping_interval=None) as ws:
            subject, sans = (await ws.recv()).split("|")
            assert subject.startswith("CN=alice@example.org,")
            assert sans == "email:alice@example.org"
            # The client sees the server's certificate the same way.
            server_certificate = ws.peer_certificate
            assert isinstance(server_certificate, PeerCertificate)
            assert "IP:127.0.0.1" in server_certificate.sans
            assert len(server_certificate.fingerprint_sha256) == 64
        if mode == "optional":
            async with connect(uri, ssl=tls.client_context(certificates.ca_cert), ping_interval=None) as ws:
                assert await ws.recv() == "none"


async def test_a_client_without_a_certificate_is_refused_when_required(certificates: DevCertificates) -> None:
    server_ssl = tls.server_context(
        certificates.cert, certificates.key, client_ca=certificates.ca_cert, client_cert="required"
    )
    async with serve(report_peer, "127.0.0.1", 0, ssl=server_ssl, ping_interval=None) as server:
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        # TLS 1.3 reports the missing certificate after the client's handshake
        # ends, on the first read: either the handshake or the upgrade fails.
        with pytest.raises((ssl.SSLError, OSError, InvalidHandshake)):
            async with connect(uri, ssl=tls.client_context(certificates.ca_cert), ping_interval=None) as ws:
                await ws.recv()


async def test_no_peer_certificate_without_tls() -> None:
    async with (
        serve(report_peer, "127.0.0.1", 0, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None) as ws,
    ):
        assert await ws.recv() == "none"
        assert ws.peer_certificate is None
