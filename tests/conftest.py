"""Fixtures every test folder shares: a throwaway dev CA and TLS contexts that trust only it."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest

from tests.channels.redis_server import RedisServer, redis_server_binary
from wsskit import tls
from wsskit.certs import DevCertificates, ensure_dev_certificates


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """The dev CA and its leaf for localhost / 127.0.0.1 / ::1, made once per run in a temp folder."""
    paths, _ = ensure_dev_certificates(tmp_path_factory.mktemp("certs"))
    return paths


@pytest.fixture(scope="session")
def server_ssl(certificates: DevCertificates) -> ssl.SSLContext:
    """A server context holding the test leaf (wsskit.tls's Mozilla profile)."""
    return tls.server_context(certificates.cert, certificates.key)


@pytest.fixture(scope="session")
def client_ssl(certificates: DevCertificates) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA only."""
    return tls.client_context(cafile=certificates.ca_cert)


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    """A private redis-server on a free port for one test (skipped, or failed under CI=true, without one)."""
    server = RedisServer(redis_server_binary())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
