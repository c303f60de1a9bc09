"""Tests for wsskit.reload: certificates replaced under a running wss:// server on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import itertools
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wsskit import tls
from wsskit.asyncio import ClientConnection, ServerConnection, connect, serve
from wsskit.certs import DevCertificates, ensure_dev_certificates
from wsskit.reload import CertificateReloader

_TIMEOUT = 10.0  # a bound on waits that end at once when things work


@dataclass(frozen=True)
class _Pair:
    """One certificate and its key, as PEM bytes, and the certificate's serial number."""

    cert: bytes
    key: bytes
    serial: int


def _issue(ca_directory: Path, name: str) -> _Pair:
    """Have the dev CA issue a new server leaf for 127.0.0.1 and ``name``.

    ensure_dev_certificates reissues its leaf whenever the one on disk does
    not cover every host asked for, so a new ``name`` makes a new pair.
    """
    dev, created = ensure_dev_certificates(ca_directory, hosts=("127.0.0.1", "localhost", name))
    assert created
    cert = dev.cert.read_bytes()
    return _Pair(cert, dev.key.read_bytes(), x509.load_pem_x509_certificate(cert).serial_number)


def _issue_with_validity(dev: DevCertificates, not_before: datetime.datetime, days: int) -> _Pair:
    """Sign a leaf for 127.0.0.1 with the dev CA, valid ``days`` days from ``not_before``."""
    ca_cert = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(dev.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "validity test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert.serial_number)


_mtimes = itertools.count(1_700_000_000 * 10**9, 10**9)


def _replace(path: Path, data: bytes) -> None:
    """Replace a file the way deployment tools do: write aside, then rename.

    Each new file gets a modification time of its own. File systems stamp
    times from a coarse clock (a few milliseconds) and may hand a freed
    inode to the next file, so two versions written in quick succession, as
    here, could otherwise look alike to check(); minutes apart, as in real
    deployments, they never do.
    """
    aside = path.with_name(f".{path.name}.new")
    aside.write_bytes(data)
    mtime = next(_mtimes)
    os.utime(aside, ns=(mtime, mtime))
    os.replace(aside, path)


def _install(directory: Path, cert: bytes, key: bytes) -> None:
    _replace(directory / "cert.pem", cert)
    _replace(directory / "key.pem", key)


@dataclass
class _Site:
    """A live certificate folder, the pairs that can go in it, and a server context loaded from it."""

    ca: DevCertificates
    live: Path
    a: _Pair
    b: _Pair
    c: _Pair
    context: ssl.SSLContext
    client_context: ssl.SSLContext

    @property
    def certfile(self) -> Path:
        return self.live / "cert.pem"

    @property
    def keyfile(self) -> Path:
        return self.live / "key.pem"


@pytest.fixture
def site(tmp_path: Path) -> _Site:
    ca_directory = tmp_path / "ca"
    ca, _ = ensure_dev_certificates(ca_directory)
    a, b, c = (_issue(ca_directory, f"{letter}.test") for letter in "abc")
    assert len({a.serial, b.serial, c.serial}) == 3
    live = tmp_path / "live"
    live.mkdir()
    _install(live, a.cert, a.key)
    context = tls.server_context(live / "cert.pem", live / "key.pem")
    return _Site(ca, live, a, b, c, context, tls.client_context(ca.ca_cert))


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def _serving(context: ssl.SSLContext) -> AsyncIterator[str]:
    async with serve(_echo, "127.0.0.1", 0, ssl=context) as server:
        yield f"wss://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def _serial(ws: ClientConnection) -> int:
    """The serial number of the certificate the server presented to this client."""
    return int(ws.ssl_object.getpeercert()["serialNumber"], 16)


async def _serial_seen_by_new_client(uri: str, site: _Site) -> int:
    async with connect(uri, ssl=site.client_context, open_timeout=_TIMEOUT) as ws:
        await _assert_echoes(ws)
        return _serial(ws)


async def _assert_echoes(ws: ClientConnection) -> None:
    await ws.send("ping")
    assert await asyncio.wait_for(ws.recv(), _TIMEOUT) == "ping"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "wsskit.reload" and record.levelno >= logging.ERROR
    ]


# --- check() and reload() ------------------------------------------------------------


async def test_new_certificate_for_new_clients_open_connections_untouched(
    site: _Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsskit.reload")
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    async with (
        _serving(site.context) as uri,
        connect(uri, ssl=site.client_context, open_timeout=_TIMEOUT) as old,
    ):
        assert _serial(old) == site.a.serial
        assert reloader.check() is False  # nothing changed yet

        _install(site.live, site.b.cert, site.b.key)
        assert reloader.check() is True
        assert reloader.check() is False  # once per change
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial
        # The connection made before the reload keeps its session.
        await _assert_echoes(old)
        assert _serial(old) == site.a.serial

        # A certificate with a key that is not its own: refused, B stays.
        _install(site.live, site.c.cert, site.a.key)
        assert reloader.check() is False
        errors = _errors(caplog)
        assert len(errors) == 1 and "refusing" in errors[0], errors
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial
        # Not retried, so not logged again, until the files change.
        assert reloader.check() is False
        assert len(_errors(caplog)) == 1

        # Deployment finished: the matching key arrives.
        _install(site.live, site.c.cert, site.c.key)
        assert reloader.check() is True
        assert await _serial_seen_by_new_client(uri, site) == site.c.serial
        await _assert_echoes(old)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(f"serial {site.c.serial:x}" in message for message in infos), infos


async def test_reload_refuses_unreadable_or_malformed_files(
    site: _Site, caplog: pytest.LogCaptureFixture
) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    async with _serving(site.context) as uri:
        site.keyfile.unlink()  # half way through a deployment
        assert reloader.check() is False
        _install(site.live, b"not a certificate\n", site.b.key)
        assert reloader.check() is False
        _install(site.live, site.b.cert, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        assert reloader.check() is False
        assert await _serial_seen_by_new_client(uri, site) == site.a.serial
        assert len(_errors(caplog)) == 3, _errors(caplog)
        _install(site.live, site.b.cert, site.b.key)
        assert reloader.check() is True
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial


async def test_reload_refuses_certificate_outside_its_validity(
    site: _Site, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = _issue_with_validity(site.ca, now - datetime.timedelta(days=30), days=10)
    future = _issue_with_validity(site.ca, now + datetime.timedelta(days=1), days=10)
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    async with _serving(site.context) as uri:
        for pair, reason in ((expired, "expired"), (future, "not valid before")):
            _install(site.live, pair.cert, pair.key)
            assert reloader.reload() is False
            assert reason in _errors(caplog)[-1]
            assert await _serial_seen_by_new_client(uri, site) == site.a.serial
        current = _issue_with_validity(site.ca, now - datetime.timedelta(hours=1), days=10)
        _install(site.live, current.cert, current.key)
        assert reloader.reload() is True
        assert await _serial_seen_by_new_client(uri, site) == current.serial


def test_reload_of_unchanged_files_is_a_no_op(site: _Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsskit.reload")
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    assert reloader.reload() is False
    # Same bytes in new files (a redeployment): nothing new is in use.
    _install(site.live, site.a.cert, site.a.key)
    assert reloader.check() is False
    assert not _errors(caplog)
    assert [r.getMessage() for r in caplog.records].count(f"certificate in {site.certfile} unchanged") == 2


async def test_key_in_the_certificate_file(site: _Site) -> None:
    combined = site.live / "combined.pem"
    combined.write_bytes(site.a.cert + site.a.key)
    context = tls.server_context(combined)
    reloader = CertificateReloader(context, combined)
    assert reloader.keyfile is None
    async with _serving(context) as uri:
        _replace(combined, site.b.key + site.b.cert)  # either order works
        assert reloader.check() is True
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial


async def test_encrypted_key_needs_the_password(site: _Site, caplog: pytest.LogCaptureFixture) -> None:
    key = serialization.load_pem_private_key(site.b.key, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    without = CertificateReloader(site.context, site.certfile, site.keyfile)
    with_password = CertificateReloader(site.context, site.certfile, site.keyfile, password="s3cret")
    async with _serving(site.context) as uri:
        _install(site.live, site.b.cert, encrypted)
        # Refused at once instead of prompting on the terminal.
        assert without.check() is False
        assert "password" in _errors(caplog)[-1]
        assert await _serial_seen_by_new_client(uri, site) == site.a.serial
        assert with_password.check() is True
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial


def test_missing_files_fail_at_construction(site: _Site) -> None:
    with pytest.raises(FileNotFoundError):
        CertificateReloader(site.context, site.live / "missing.pem", site.keyfile)
    with pytest.raises(FileNotFoundError):
        CertificateReloader(site.context, site.certfile, site.live / "missing.pem")


def test_custom_logger(site: _Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="myapp.tls")
    reloader = CertificateReloader(
        site.context, site.certfile, site.keyfile, logger=logging.getLogger("myapp.tls")
    )
    _install(site.live, site.b.cert, site.b.key)
    assert reloader.check() is True
    assert any(r.name == "myapp.tls" and "loaded certificate" in r.getMessage() for r in caplog.records)


# --- watch() and SIGHUP ----------------------------------------------------------------


async def test_watch_calls_check_until_cancelled(site: _Site, monkeypatch: pytest.MonkeyPatch) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    reloaded = asyncio.Event()
    check = reloader.check

    def spy() -> bool:
        result = check()
        if result:
            reloaded.set()
        return result

    monkeypatch.setattr(reloader, "check", spy)
    async with _serving(site.context) as uri:
        watcher = asyncio.create_task(reloader.watch(interval=0.01))
        try:
            _install(site.live, site.b.cert, site.b.key)
            await asyncio.wait_for(reloaded.wait(), _TIMEOUT)
            assert await _serial_seen_by_new_client(uri, site) == site.b.serial
        finally:
            watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_watch_survives_an_unexpected_error(
    site: _Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    calls = 0
    second_call = asyncio.Event()

    def failing_check() -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            second_call.set()
        raise RuntimeError("boom")

    monkeypatch.setattr(reloader, "check", failing_check)
    watcher = asyncio.create_task(reloader.watch(interval=0.01))
    try:
        await asyncio.wait_for(second_call.wait(), _TIMEOUT)
    finally:
        watcher.cancel()
    assert "certificate check failed" in _errors(caplog)[0]


async def test_watch_needs_a_positive_interval(site: _Site) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    for interval in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interval"):
            await reloader.watch(interval)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is Unix only")
async def test_sighup_reloads(site: _Site, monkeypatch: pytest.MonkeyPatch) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    reloaded = asyncio.Event()
    reload = reloader.reload

    def spy() -> bool:
        result = reload()
        reloaded.set()
        return result

    monkeypatch.setattr(reloader, "reload", spy)
    loop = asyncio.get_running_loop()
    async with _serving(site.context) as uri:
        reloader.install_sighup(loop)
        try:
            _install(site.live, site.b.cert, site.b.key)
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.wait_for(reloaded.wait(), _TIMEOUT)
        finally:
            assert loop.remove_signal_handler(signal.SIGHUP)
        assert await _serial_seen_by_new_client(uri, site) == site.b.serial


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is Unix only")
async def test_sighup_defaults_to_the_running_loop(site: _Site) -> None:
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    loop = asyncio.get_running_loop()
    reloader.install_sighup()
    assert loop.remove_signal_handler(signal.SIGHUP)


@pytest.mark.skipif(hasattr(signal, "SIGHUP"), reason="this platform has SIGHUP")
def test_sighup_is_unix_only(site: _Site) -> None:  # pragma: no cover - Windows
    reloader = CertificateReloader(site.context, site.certfile, site.keyfile)
    with pytest.raises(NotImplementedError):
        reloader.install_sighup(asyncio.new_event_loop())
