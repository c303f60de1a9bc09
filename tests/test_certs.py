"""Tests for wsskit.certs: the local development CA. Every file goes to tmp_path."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from wsskit import certs
from wsskit.certs import (
    DevCertificates,
    certificate_info,
    data_dir,
    ensure_dev_certificates,
    install_trust,
    issue_client_certificate,
    trust_instructions,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(certificate: x509.Certificate) -> list[x509.GeneralName]:
    return list(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """A CA and server certificate made once for the read-only tests."""
    paths, created = ensure_dev_certificates(tmp_path_factory.mktemp("shared") / "certs")
    assert created
    return paths


@pytest.fixture
def fresh(tmp_path: Path) -> DevCertificates:
    """A CA and server certificate of this test's own, free to modify."""
    paths, _ = ensure_dev_certificates(tmp_path / "certs")
    return paths


# --- data_dir --------------------------------------------------------------------


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WSSKIT_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home"


def test_data_dir_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WSSKIT_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "wsskit"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert data_dir() == Path.home() / ".local" / "share" / "wsskit"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_dir() == Path.home() / ".local" / "share" / "wsskit"


def test_data_dir_macos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WSSKIT_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == Path.home() / "Library" / "Application Support" / "wsskit"


def test_data_dir_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WSSKIT_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert data_dir() == tmp_path / "Local" / "wsskit"


def test_default_directory_is_under_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WSSKIT_HOME", str(tmp_path / "wsskit-home"))
    paths, created = ensure_dev_certificates(hosts=["localhost"])
    assert created
    assert paths.directory == tmp_path / "wsskit-home" / "certs"
    assert paths.cert.is_file()


# --- ensure_dev_certificates -------------------------------------------------------


@posix_only
def test_files_and_modes(shared: DevCertificates) -> None:
    assert _mode(shared.directory) == 0o700
    assert _mode(shared.ca_key) == 0o600
    assert _mode(shared.key) == 0o600
    assert _mode(shared.ca_cert) == 0o644
    assert _mode(shared.cert) == 0o644
    # No temporary files are left behind.
    assert sorted(p.name for p in shared.directory.iterdir() if p.name.endswith(".tmp")) == []


def test_ca_certificate(shared: DevCertificates) -> None:
    ca = _load(shared.ca_cert)
    assert ca.subject == ca.issuer
    name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(name, str) and name.startswith("wsskit development CA ")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3651)
    public_key = ca.public_key()
    assert public_key.curve.name == "secp256r1"  # type: ignore[union-attr]


def test_server_certificate(shared: DevCertificates) -> None:
    leaf = _load(shared.cert)
    ca = _load(shared.ca_cert)
    leaf.verify_directly_issued_by(ca)
    assert _sans(leaf) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Apple's limit for TLS server certificates.
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=90, hours=1)
    assert leaf.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)


@pytest.mark.parametrize(
    "subject",
    [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ],
)
def test_chain_verifies_with_webpki_rules(
    shared: DevCertificates, subject: x509.verification.Subject
) -> None:
    verifier = PolicyBuilder().store(Store([_load(shared.ca_cert)])).build_server_verifier(subject)
    chain = verifier.verify(_load(shared.cert), [])
    assert len(chain) == 2


def test_chain_refuses_other_names(shared: DevCertificates) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([_load(shared.ca_cert)]))
        .build_server_verifier(x509.DNSName("example.com"))
    )
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(_load(shared.cert), [])


def test_chain_verifies_with_openssl_strict(shared: DevCertificates) -> None:
    """Python 3.13+ turns on VERIFY_X509_STRICT by default: the certificates must pass it."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(shared.cert, shared.key)
    client = ssl.create_default_context(cafile=str(shared.ca_cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, incoming, outgoing in (
            ("client", client_side, client_in, server_out),
            ("server", server_side, server_in, client_out),
        ):
            incoming.write(outgoing.read())
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            break
    assert all(done.values())
    assert client_side.getpeercert()


def test_reuse_on_second_call(fresh: DevCertificates) -> None:
    ca_serial = _load(fresh.ca_cert).serial_number
    leaf_serial = _load(fresh.cert).serial_number
    key_bytes = fresh.key.read_bytes()
    again, created = ensure_dev_certificates(fresh.directory)
    assert created is False
    assert again == fresh
    assert _load(fresh.ca_cert).serial_number == ca_serial
    assert _load(fresh.cert).serial_number == leaf_serial
    assert fresh.key.read_bytes() == key_bytes


def test_new_host_reissues_leaf_and_keeps_ca(fresh: DevCertificates) -> None:
    ca_serial = _load(fresh.ca_cert).serial_number
    leaf_serial = _load(fresh.cert).serial_number
    hosts = ("localhost", "127.0.0.1", "::1", "app.test", "192.168.1.10")
    _, created = ensure_dev_certificates(fresh.directory, hosts=hosts)
    assert created is True
    leaf = _load(fresh.cert)
    assert leaf.serial_number != leaf_serial
    assert _load(fresh.ca_cert).serial_number == ca_serial
    leaf.verify_directly_issued_by(_load(fresh.ca_cert))
    assert x509.DNSName("app.test") in _sans(leaf)
    assert x509.IPAddress(ipaddress.ip_address("192.168.1.10")) in _sans(leaf)
    # A subset of what the certificate covers needs nothing new.
    _, created = ensure_dev_certificates(fresh.directory, hosts=("app.test", "localhost"))
    assert created is False
    assert _load(fresh.cert).serial_number == leaf.serial_number


def test_host_normalisation(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certificates(
        tmp_path / "certs",
        hosts=["Example.TEST", "[::1]", "bücher.test", "*.app.test", "example.test", "localhost."],
    )
    assert _sans(_load(paths.cert)) == [
        x509.DNSName("example.test"),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("xn--bcher-kva.test"),
        x509.DNSName("*.app.test"),
        x509.DNSName("localhost"),
    ]


def test_a_lone_string_is_one_host(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certificates(tmp_path / "certs", hosts="localhost")
    assert _sans(_load(paths.cert)) == [x509.DNSName("localhost")]


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        [""],
        ["bad host"],
        ["exa$mple.test"],
        ["-bad.test"],
        ["1.2.3"],
        ["256.1.1.1"],
        ["*.test"],
        ["a.*.test"],
        ["fe80::1%eth0"],
        ["a" * 64 + ".test"],
        ["bü..test"],
    ],
)
def test_invalid_hosts(tmp_path: Path, hosts: list[str]) -> None:
    with pytest.raises(ValueError):
        ensure_dev_certificates(tmp_path / "certs", hosts=hosts)
    assert not (tmp_path / "certs").exists()


def test_address_only_certificate(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certificates(tmp_path / "certs", hosts=["10.0.0.1"])
    leaf = _load(paths.cert)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "10.0.0.1"
    assert _sans(leaf) == [x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]


def test_non_ec_ca_key_replaces_ca(fresh: DevCertificates) -> None:
    other_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fresh.ca_key.write_bytes(other_key)
    ca_serial = _load(fresh.ca_cert).serial_number
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    assert _load(fresh.ca_cert).serial_number != ca_serial


def test_non_ca_certificate_replaces_ca(fresh: DevCertificates) -> None:
    fresh.ca_cert.write_bytes(fresh.cert.read_bytes())
    fresh.ca_key.write_bytes(fresh.key.read_bytes())
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    ca = _load(fresh.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    _load(fresh.cert).verify_directly_issued_by(ca)


def test_corrupt_leaf_is_reissued(fresh: DevCertificates) -> None:
    ca_serial = _load(fresh.ca_cert).serial_number
    fresh.cert.write_text("not a certificate")
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    _load(fresh.cert).verify_directly_issued_by(_load(fresh.ca_cert))
    assert _load(fresh.ca_cert).serial_number == ca_serial


def test_mismatched_leaf_key_is_reissued(fresh: DevCertificates, shared: DevCertificates) -> None:
    fresh.key.write_bytes(shared.key.read_bytes())
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(fresh.cert, fresh.key)  # raises if they do not match


def test_leaf_from_another_ca_is_reissued(fresh: DevCertificates, shared: DevCertificates) -> None:
    fresh.cert.write_bytes(shared.cert.read_bytes())
    fresh.key.write_bytes(shared.key.read_bytes())
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    _load(fresh.cert).verify_directly_issued_by(_load(fresh.ca_cert))


def test_missing_ca_key_replaces_ca_and_leaf(fresh: DevCertificates) -> None:
    ca_serial = _load(fresh.ca_cert).serial_number
    fresh.ca_key.unlink()
    _, created = ensure_dev_certificates(fresh.directory)
    assert created
    assert fresh.ca_key.is_file()
    ca = _load(fresh.ca_cert)
    assert ca.serial_number != ca_serial
    _load(fresh.cert).verify_directly_issued_by(ca)


def test_expiring_leaf_is_reissued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certs, "_LEAF_LIFETIME", datetime.timedelta(days=10))
    paths, _ = ensure_dev_certificates(tmp_path / "certs")
    short = _load(paths.cert)
    assert short.not_valid_after_utc - short.not_valid_before_utc < datetime.timedelta(days=11)
    monkeypatch.undo()
    _, created = ensure_dev_certificates(paths.directory)
    assert created
    renewed = _load(paths.cert)
    assert renewed.serial_number != short.serial_number
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc > datetime.timedelta(days=89)


def test_expiring_ca_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certs, "_CA_LIFETIME", datetime.timedelta(days=20))
    paths, _ = ensure_dev_certificates(tmp_path / "certs")
    old_ca = _load(paths.ca_cert)
    # The leaf never outlives its CA.
    assert _load(paths.cert).not_valid_after_utc <= old_ca.not_valid_after_utc
    monkeypatch.undo()
    _, created = ensure_dev_certificates(paths.directory)
    assert created
    new_ca = _load(paths.ca_cert)
    assert new_ca.serial_number != old_ca.serial_number
    _load(paths.cert).verify_directly_issued_by(new_ca)


@posix_only
def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir(mode=0o750)
    os.chmod(directory, 0o750)
    paths, _ = ensure_dev_certificates(directory)
    assert _mode(directory) == 0o750
    assert _mode(paths.key) == 0o600


def test_concurrent_calls_agree(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    barrier = threading.Barrier(4)
    results: list[tuple[DevCertificates, bool]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(ensure_dev_certificates(directory))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sorted(created for _, created in results) == [False, False, False, True]
    paths = results[0][0]
    _load(paths.cert).verify_directly_issued_by(_load(paths.ca_cert))


# --- issue_client_certificate ----------------------------------------------------------


def test_client_certificate(fresh: DevCertificates) -> None:
    cert_path, key_path = issue_client_certificate("alice", fresh.directory)
    assert cert_path == fresh.directory / "client-alice.pem"
    assert key_path == fresh.directory / "client-alice-key.pem"
    if sys.platform != "win32":
        assert _mode(key_path) == 0o600
    certificate = _load(cert_path)
    ca = _load(fresh.ca_cert)
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Issuing a client certificate leaves the server certificate alone.
    _, created = ensure_dev_certificates(fresh.directory)
    assert created is False


def test_client_certificate_with_email_name(fresh: DevCertificates) -> None:
    cert_path, _ = issue_client_certificate("alice@Example.TEST", fresh.directory)
    certificate = _load(cert_path)
    assert _sans(certificate) == [x509.RFC822Name("alice@example.test")]
    verifier = PolicyBuilder().store(Store([_load(fresh.ca_cert)])).build_client_verifier()
    verified = verifier.verify(certificate, [])
    assert verified.subjects == [x509.RFC822Name("alice@example.test")]


def test_client_certificate_plain_name_has_no_alt_names(fresh: DevCertificates) -> None:
    cert_path, _ = issue_client_certificate("carol", fresh.directory)
    with pytest.raises(x509.ExtensionNotFound):
        _sans(_load(cert_path))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bob@example.test", [x509.RFC822Name("bob@example.test")]),
        ("bob@bücher.test", [x509.RFC822Name("bob@xn--bcher-kva.test")]),
        ("bob", []),
        ("@example.test", []),
        ("a@b@example.test", []),
        ("bob@", []),
        ("bob@127.0.0.1", []),
        ("bob@*.example.test", []),
        ("bob@bad host", []),
        ("bøb@example.test", []),
    ],
)
def test_client_alt_names(name: str, expected: list[x509.GeneralName]) -> None:
    assert certs._client_alt_names(name) == expected


def test_client_certificate_creates_ca(tmp_path: Path) -> None:
    cert_path, _ = issue_client_certificate("bob", tmp_path / "certs")
    paths = DevCertificates.in_directory(tmp_path / "certs")
    _load(cert_path).verify_directly_issued_by(_load(paths.ca_cert))
    assert not paths.cert.exists()


def test_client_certificate_file_name_is_sanitised(fresh: DevCertificates) -> None:
    cert_path, key_path = issue_client_certificate("../eve@example.com", fresh.directory)
    assert cert_path.parent == fresh.directory
    assert cert_path.name == "client-_eve_example.com.pem"
    assert key_path.parent == fresh.directory
    common_name = _load(cert_path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "../eve@example.com"


@pytest.mark.parametrize("name", ["", "x" * 65, "a\nb"])
def test_client_certificate_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        issue_client_certificate(name, tmp_path)


# --- trust_instructions / install_trust ------------------------------------------------


def test_trust_instructions(shared: DevCertificates) -> None:
    text = trust_instructions(shared.ca_cert)
    path = str(shared.ca_cert)
    assert f"--cacert {path}" in text
    assert f"client_context(cafile={path!r})" in text
    assert f"curl --cacert {path}" in text
    assert "SSL_CERT_FILE=" in text
    assert "Firefox" in text and "Chrome" in text
    assert "/usr/local/share/ca-certificates/wsskit-dev-ca.crt" in text
    assert "update-ca-certificates" in text
    assert "security add-trusted-cert" in text


def test_trust_instructions_quote_paths(tmp_path: Path) -> None:
    text = trust_instructions(tmp_path / "my dir" / "ca.pem")
    assert f"--cacert '{tmp_path / 'my dir' / 'ca.pem'}'" in text


def test_install_trust_copies(shared: DevCertificates, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    description = install_trust(shared.ca_cert, store_dir=store, update_command=None)
    target = store / "wsskit-dev-ca.crt"
    assert _load(target) == _load(shared.ca_cert)
    if sys.platform != "win32":
        assert _mode(target) == 0o644
    assert str(target) in description


def test_install_trust_runs_update_command(shared: DevCertificates, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    marker = tmp_path / "ran"
    command = (sys.executable, "-c", f"open({str(marker)!r}, 'w').close()")
    description = install_trust(shared.ca_cert, store_dir=store, update_command=command)
    assert marker.exists()
    assert "ran" in description


def test_install_trust_failing_update_command(shared: DevCertificates, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    command = (sys.executable, "-c", "import sys; sys.exit('boom')")
    with pytest.raises(OSError, match="boom"):
        install_trust(shared.ca_cert, store_dir=store, update_command=command)


def test_install_trust_missing_command(shared: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Debian-like"):
        install_trust(shared.ca_cert, store_dir=tmp_path, update_command=("wsskit-no-such-command",))


def test_install_trust_missing_store(shared: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Debian-like"):
        install_trust(shared.ca_cert, store_dir=tmp_path / "absent", update_command=None)


def test_install_trust_needs_write_access(
    shared: DevCertificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, which can write anywhere: fake the access check.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError) as raised:
        install_trust(shared.ca_cert, store_dir=tmp_path, update_command=None)
    assert "root" in str(raised.value)
    assert "update-ca-certificates" in str(raised.value)  # the manual instructions
    assert not (tmp_path / "wsskit-dev-ca.crt").exists()


def test_install_trust_refuses_leaf(shared: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a CA"):
        install_trust(shared.cert, store_dir=tmp_path, update_command=None)


# --- certificate_info ---------------------------------------------------------------------


def test_certificate_info(shared: DevCertificates) -> None:
    info = certificate_info(shared.cert)
    leaf = _load(shared.cert)
    assert info["subject"] == leaf.subject.rfc4514_string()
    assert "CN=localhost" in info["subject"]
    assert info["issuer"] == _load(shared.ca_cert).subject.rfc4514_string()
    assert int(info["serial"], 16) == leaf.serial_number
    assert info["sans"] == "DNS:localhost, IP:127.0.0.1, IP:::1"
    assert info["sha256"] == leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    assert datetime.datetime.fromisoformat(info["not_after"]) == leaf.not_valid_after_utc
    assert datetime.datetime.fromisoformat(info["not_before"]) == leaf.not_valid_before_utc


def test_certificate_info_of_ca(shared: DevCertificates) -> None:
    info = certificate_info(shared.ca_cert)
    assert info["subject"] == info["issuer"]
    assert info["sans"] == ""


def test_certificate_info_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        certificate_info(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ValueError):
        certificate_info(tmp_path / "junk.pem")
