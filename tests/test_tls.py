"""Tests for wsskit.tls: real TLS handshakes on loopback with certificates made by wsskit.certs."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wsskit import tls
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.certs import DevCertificates, ensure_dev_certificates, issue_client_certificate
from wsskit.exceptions import InvalidHandshake

_TIMEOUT = 10.0


@dataclass
class _Pki:
    dev: DevCertificates
    other: DevCertificates  # a second CA that clients do not trust
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> _Pki:
    dev, _ = ensure_dev_certificates(tmp_path_factory.mktemp("dev") / "certs")
    other, _ = ensure_dev_certificates(tmp_path_factory.mktemp("other") / "certs")
    client_cert, client_key = issue_client_certificate("test-client", dev.directory)
    return _Pki(dev, other, client_cert, client_key)


@pytest.fixture(scope="module")
def ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@dataclass
class _Outcome:
    """What each side of one handshake saw: a description or the exception."""

    client: dict[str, Any] | BaseException
    server: dict[str, Any] | BaseException

    def ok(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(self.client, BaseException):
            raise AssertionError(f"client failed: {self.client!r} (server: {self.server!r})")
        if isinstance(self.server, BaseException):
            raise AssertionError(f"server failed: {self.server!r}")
        return self.client, self.server


def _describe(sock: ssl.SSLSocket) -> dict[str, Any]:
    return {
        "version": sock.version(),
        "cipher": sock.cipher(),
        "alpn": sock.selected_alpn_protocol(),
        "peer": sock.getpeercert(),
    }


def _handshake(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    *,
    address: str = "127.0.0.1",
    server_hostname: str | None = "localhost",
) -> _Outcome:
    """Run one TLS handshake between a server thread and this thread over loopback TCP.

    The server sends two bytes after its handshake; the client reads them, so
    a TLS 1.3 client sees a post-handshake rejection of its certificate.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    outcome: dict[str, Any] = {}
    with socket.create_server((address, 0), family=family) as listener:
        listener.settimeout(_TIMEOUT)

        def serve() -> None:
            try:
                raw, _ = listener.accept()
                raw.settimeout(_TIMEOUT)
                with server_context.wrap_socket(raw, server_side=True) as sock:
                    outcome["server"] = _describe(sock)
                    sock.sendall(b"ok")
            except (OSError, ssl.SSLError) as exc:
                outcome["server"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname()[:2], timeout=_TIMEOUT) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as sock,
            ):
                described = _describe(sock)
                assert sock.recv(2) == b"ok"
                outcome["client"] = described
        except (OSError, ssl.SSLError) as exc:
            outcome["client"] = exc
        finally:
            thread.join(_TIMEOUT)
    assert not thread.is_alive()
    return _Outcome(outcome["client"], outcome["server"])


def _old_client(version: ssl.TLSVersion, ciphers: str = "DEFAULT:@SECLEVEL=0") -> ssl.SSLContext:
    """A client pinned to one TLS version that verifies nothing: it tests the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated, on purpose
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers(ciphers)
    return context


def _subject_cn(peer: dict[str, Any]) -> str:
    for rdn in peer["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    raise AssertionError(f"no commonName in {peer!r}")


# --- client_context -------------------------------------------------------------


def test_client_context_verifies_by_default() -> None:
    context = tls.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_client_context_keyfile_needs_certfile(pki: _Pki) -> None:
    with pytest.raises(ValueError, match="certfile"):
        tls.client_context(keyfile=pki.client_key)


def test_client_context_missing_cafile(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tls.client_context(tmp_path / "missing.pem")


def test_accepts_dev_certificate_for_localhost(pki: _Pki) -> None:
    client, server = _handshake(
        tls.server_context(pki.dev.cert, pki.dev.key), tls.client_context(pki.dev.ca_cert)
    ).ok()
    assert client["version"] == "TLSv1.3"
    assert client["alpn"] == server["alpn"] == "http/1.1"
    assert _subject_cn(client["peer"]) == "localhost"


def test_accepts_dev_certificate_for_ipv4_address(pki: _Pki) -> None:
    _handshake(
        tls.server_context(pki.dev.cert, pki.dev.key),
        tls.client_context(pki.dev.ca_cert),
        server_hostname="127.0.0.1",
    ).ok()


def test_accepts_dev_certificate_for_ipv6_address(pki: _Pki, ipv6: bool) -> None:
    if not ipv6:
        pytest.skip("this machine has no IPv6 loopback")
    _handshake(
        tls.server_context(pki.dev.cert, pki.dev.key),
        tls.client_context(pki.dev.ca_cert),
        address="::1",
        server_hostname="::1",
    ).ok()


def test_cadata_and_capath(pki: _Pki, tmp_path: Path) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key)
    _handshake(server, tls.client_context(cadata=pki.dev.ca_cert.read_text())).ok()
    # capath wants OpenSSL's hashed file names: <subject hash>.0
    directory = tmp_path / "capath"
    directory.mkdir()
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available to hash a CA directory")
    digest = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(pki.dev.ca_cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (directory / f"{digest}.0").write_bytes(pki.dev.ca_cert.read_bytes())
    _handshake(server, tls.client_context(capath=directory)).ok()


def test_refuses_untrusted_ca(pki: _Pki) -> None:
    outcome = _handshake(
        tls.server_context(pki.other.cert, pki.other.key), tls.client_context(pki.dev.ca_cert)
    )
    assert isinstance(outcome.client, ssl.SSLCertVerificationError)
    assert outcome.client.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert isinstance(outcome.server, ssl.SSLError)


def test_refuses_wrong_hostname(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key)
    for name in ("example.com", "127.0.0.2", "localhost.example"):
        outcome = _handshake(server, tls.client_context(pki.dev.ca_cert), server_hostname=name)
        assert isinstance(outcome.client, ssl.SSLCertVerificationError), name
        # X509_V_ERR_HOSTNAME_MISMATCH (62) or X509_V_ERR_IP_ADDRESS_MISMATCH (64)
        assert outcome.client.verify_code in (62, 64), name


def test_system_trust_does_not_include_dev_ca(pki: _Pki) -> None:
    outcome = _handshake(tls.server_context(pki.dev.cert, pki.dev.key), tls.client_context())
    assert isinstance(outcome.client, ssl.SSLCertVerificationError)


def test_ssl_cert_file_is_honoured(pki: _Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.dev.ca_cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    _handshake(tls.server_context(pki.dev.cert, pki.dev.key), tls.client_context()).ok()


def test_default_client_context_is_shared() -> None:
    first = tls.default_client_context()
    assert tls.default_client_context() is first
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    tls.default_client_context.cache_clear()
    try:
        assert tls.default_client_context() is not first
    finally:
        tls.default_client_context.cache_clear()


# --- server_context ---------------------------------------------------------------


def test_server_context_options(pki: _Pki) -> None:
    context = tls.server_context(pki.dev.cert, pki.dev.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_TICKET
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.verify_mode == ssl.CERT_NONE
    for cipher in context.get_ciphers():
        if cipher["protocol"] == "TLSv1.3":
            continue
        assert cipher["name"].startswith("ECDHE-"), cipher["name"]
        assert cipher["aead"], cipher["name"]
    modern = tls.server_context(pki.dev.cert, pki.dev.key, profile="modern")
    assert modern.minimum_version == ssl.TLSVersion.TLSv1_3


class _GroupsRecorder:
    """Stands in for an SSLContext that has set_groups (newer Pythons)."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.groups: str | None = None

    def set_groups(self, groups: str) -> None:
        if not set(groups.split(":")) <= self.known:
            raise ssl.SSLError("unknown group")
        self.groups = groups


def test_groups_prefer_mozilla_list_with_post_quantum_hybrid() -> None:
    everything = {"X25519MLKEM768", "X25519", "prime256v1", "secp384r1"}
    context = _GroupsRecorder(everything)
    tls._set_groups(context)  # type: ignore[arg-type]
    assert context.groups == "X25519MLKEM768:X25519:prime256v1:secp384r1"
    context = _GroupsRecorder(everything - {"X25519MLKEM768"})
    tls._set_groups(context)  # type: ignore[arg-type]
    assert context.groups == "X25519:prime256v1:secp384r1"
    context = _GroupsRecorder({"prime256v1", "secp384r1"})
    tls._set_groups(context)  # type: ignore[arg-type]
    assert context.groups == "prime256v1:secp384r1"


def test_server_context_rejects_unknown_profile(pki: _Pki) -> None:
    with pytest.raises(ValueError, match="profile"):
        tls.server_context(pki.dev.cert, pki.dev.key, profile="old")  # type: ignore[arg-type]


def test_server_context_key_mismatch(pki: _Pki) -> None:
    with pytest.raises(ssl.SSLError):
        tls.server_context(pki.dev.cert, pki.other.key)


def test_intermediate_negotiates_tls12_with_aead(pki: _Pki) -> None:
    client_context = tls.client_context(pki.dev.ca_cert)
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client, server = _handshake(tls.server_context(pki.dev.cert, pki.dev.key), client_context).ok()
    assert client["version"] == server["version"] == "TLSv1.2"
    assert client["cipher"][0] in tls.INTERMEDIATE_CIPHERS.split(":")
    assert client["cipher"][0].startswith("ECDHE-ECDSA-")
    assert client["alpn"] == "http/1.1"


def test_intermediate_refuses_cbc_ciphers(pki: _Pki) -> None:
    client_context = _old_client(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256")
    outcome = _handshake(tls.server_context(pki.dev.cert, pki.dev.key), client_context)
    assert isinstance(outcome.server, ssl.SSLError)
    assert outcome.server.reason == "NO_SHARED_CIPHER"
    assert isinstance(outcome.client, OSError)  # an alert (SSLError) or a reset


@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_refuses_tls11_client(pki: _Pki, profile: tls.Profile) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key, profile=profile)
    outcome = _handshake(server, _old_client(ssl.TLSVersion.TLSv1_1))
    assert isinstance(outcome.server, ssl.SSLError)
    # The server, not the client, refused: the client did offer TLS 1.1.
    assert outcome.server.reason == "UNSUPPORTED_PROTOCOL", outcome.server
    assert isinstance(outcome.client, OSError)  # an alert (SSLError) or a reset


def test_old_client_can_speak_tls11_to_a_lax_server(pki: _Pki) -> None:
    """Control for test_refuses_tls11_client: the refusal is the server's policy."""
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.load_cert_chain(pki.dev.cert, pki.dev.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax.minimum_version = ssl.TLSVersion.TLSv1
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")
    outcome = _handshake(lax, _old_client(ssl.TLSVersion.TLSv1_1))
    if isinstance(outcome.client, BaseException):
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all: {outcome.client!r}")
    client, _ = outcome.ok()
    assert client["version"] == "TLSv1.1"


def test_modern_refuses_tls12_client(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key, profile="modern")
    client_context = tls.client_context(pki.dev.ca_cert)
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    outcome = _handshake(server, client_context)
    assert isinstance(outcome.server, ssl.SSLError)
    assert outcome.server.reason == "UNSUPPORTED_PROTOCOL"
    assert isinstance(outcome.client, OSError)  # an alert (SSLError) or a reset


def test_modern_accepts_tls13(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key, profile="modern")
    client, _ = _handshake(server, tls.client_context(pki.dev.ca_cert)).ok()
    assert client["version"] == "TLSv1.3"
    assert client["cipher"][0] in (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    )


def test_certificate_reload_applies_to_new_handshakes(pki: _Pki, tmp_path: Path) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key)
    client_context = tls.client_context(pki.dev.ca_cert)
    before, _ = _handshake(server, client_context).ok()
    renewed, _ = ensure_dev_certificates(pki.dev.directory, hosts=("localhost", "reload.test"))
    try:
        server.load_cert_chain(renewed.cert, renewed.key)
        after, _ = _handshake(server, client_context).ok()
    finally:
        ensure_dev_certificates(pki.dev.directory)
    assert before["peer"]["serialNumber"] != after["peer"]["serialNumber"]
    assert ("DNS", "reload.test") in after["peer"]["subjectAltName"]


# --- mutual TLS ----------------------------------------------------------------------


def test_mutual_tls_accepts_client_certificate(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert)
    assert server.verify_mode == ssl.CERT_REQUIRED
    client_context = tls.client_context(pki.dev.ca_cert, pki.client_cert, pki.client_key)
    _, server_side = _handshake(server, client_context).ok()
    assert _subject_cn(server_side["peer"]) == "test-client"


def test_mutual_tls_requires_client_certificate(pki: _Pki) -> None:
    for server in (
        tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert),
        tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert, client_cert="required"),
    ):
        outcome = _handshake(server, tls.client_context(pki.dev.ca_cert))
        assert isinstance(outcome.server, ssl.SSLError)
        assert outcome.server.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE", outcome.server
        assert isinstance(outcome.client, OSError)  # TLS 1.3: the alert comes after the client's Finished


def test_mutual_tls_refuses_certificate_from_another_ca(pki: _Pki) -> None:
    stranger_cert, stranger_key = issue_client_certificate("stranger", pki.other.directory)
    modes: tuple[tls.ClientCert, ...] = ("required", "optional")
    for mode in modes:
        server = tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert, client_cert=mode)
        outcome = _handshake(server, tls.client_context(pki.dev.ca_cert, stranger_cert, stranger_key))
        assert isinstance(outcome.server, ssl.SSLCertVerificationError), mode
        assert isinstance(outcome.client, OSError), mode


def test_mutual_tls_refuses_server_certificate_as_client_certificate(pki: _Pki) -> None:
    # The server leaf carries serverAuth only; OpenSSL checks the purpose.
    server = tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert)
    client_context = tls.client_context(pki.dev.ca_cert, pki.dev.cert, pki.dev.key)
    outcome = _handshake(server, client_context)
    assert isinstance(outcome.server, ssl.SSLError)


def test_mutual_tls_optional(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert, client_cert="optional")
    assert server.verify_mode == ssl.CERT_OPTIONAL
    _, anonymous = _handshake(server, tls.client_context(pki.dev.ca_cert)).ok()
    assert not anonymous["peer"]
    client_context = tls.client_context(pki.dev.ca_cert, pki.client_cert, pki.client_key)
    _, authenticated = _handshake(server, client_context).ok()
    assert _subject_cn(authenticated["peer"]) == "test-client"


def test_client_cert_mode_is_checked(pki: _Pki) -> None:
    with pytest.raises(ValueError, match="client_cert"):
        tls.server_context(
            pki.dev.cert,
            pki.dev.key,
            client_ca=pki.dev.ca_cert,
            client_cert="yes",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="client_ca"):
        tls.server_context(pki.dev.cert, pki.dev.key, client_cert="optional")
    with pytest.raises(FileNotFoundError):
        tls.server_context(pki.dev.cert, pki.dev.key, client_ca=pki.dev.directory / "missing.pem")


def test_no_client_certificate_requested_without_client_ca(pki: _Pki) -> None:
    server = tls.server_context(pki.dev.cert, pki.dev.key)
    assert server.verify_mode == ssl.CERT_NONE
    client_context = tls.client_context(pki.dev.ca_cert, pki.client_cert, pki.client_key)
    _, server_side = _handshake(server, client_context).ok()
    assert not server_side["peer"]  # the server never asked


# --- asyncio ---------------------------------------------------------------------------


async def test_asyncio_streams(pki: _Pki) -> None:
    server_context = tls.server_context(pki.dev.cert, pki.dev.key)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=tls.client_context(pki.dev.ca_cert), server_hostname="localhost"
            ),
            _TIMEOUT,
        )
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), _TIMEOUT) == b"hello"
        writer.close()
        await writer.wait_closed()


async def test_asyncio_server_sees_client_certificate(pki: _Pki) -> None:
    """Mutual TLS through wsskit's own server: the handler reads the client's subject."""
    subjects: list[str | None] = []

    async def handler(ws: ServerConnection) -> None:
        peer = ws.ssl_object.getpeercert()
        subjects.append(_subject_cn(peer) if peer else None)
        await ws.send("hello")

    modes: tuple[tls.ClientCert, ...] = ("required", "optional")
    for mode in modes:
        server_context = tls.server_context(
            pki.dev.cert, pki.dev.key, client_ca=pki.dev.ca_cert, client_cert=mode
        )
        async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
            uri = f"wss://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            with_certificate = tls.client_context(pki.dev.ca_cert, pki.client_cert, pki.client_key)
            async with connect(uri, ssl=with_certificate, open_timeout=_TIMEOUT) as ws:
                assert await asyncio.wait_for(ws.recv(), _TIMEOUT) == "hello"
            without_certificate = tls.client_context(pki.dev.ca_cert)
            if mode == "optional":
                async with connect(uri, ssl=without_certificate, open_timeout=_TIMEOUT) as ws:
                    assert await asyncio.wait_for(ws.recv(), _TIMEOUT) == "hello"
            else:
                # TLS 1.3: the client's handshake ends before the server has
                # checked its (missing) certificate, so the refusal arrives as
                # an alert while the client waits for the HTTP answer, and
                # asyncio's SSL transport reports that alert as a plain EOF.
                with pytest.raises((OSError, InvalidHandshake)):
                    await connect(uri, ssl=without_certificate, open_timeout=_TIMEOUT)
    assert subjects == ["test-client", "test-client", None]


def _offer_only(client: ssl.SSLContext, group: str) -> None:
    # The client offers this one group. set_ecdh_curve() sets the whole
    # list, but before Python 3.11 it knows only the named (NIST) curves, not
    # X25519 or X448: the OpenSSL call of wsskit._tls_groups does it there.
    from wsskit._tls_groups import set_groups_list

    try:
        client.set_ecdh_curve(group)
    except ssl.SSLError:
        if not set_groups_list(client, group):
            pytest.fail(f"cannot make a client that offers only {group}")


@pytest.mark.parametrize("profile", ["intermediate", "modern"])
@pytest.mark.parametrize(
    ("group", "accepted"),
    [("X25519", True), ("prime256v1", True), ("secp384r1", True), ("X448", False), ("secp521r1", False)],
)
def test_key_exchange_groups_are_mozillas_exactly(
    pki: _Pki, profile: tls.Profile, group: str, accepted: bool
) -> None:
    # A client offering only one group (set_ecdh_curve sets the whole list)
    # gets through with Mozilla's three and is refused with any other, on
    # every Python: set_groups where it exists, wsskit._tls_groups before.
    client = tls.client_context(pki.dev.ca_cert)
    _offer_only(client, group)
    outcome = _handshake(tls.server_context(pki.dev.cert, pki.dev.key, profile=profile), client)
    if accepted:
        outcome.ok()
    else:
        assert isinstance(outcome.client, ssl.SSLError)
        assert isinstance(outcome.server, ssl.SSLError)


def test_groups_fallback_refuses_an_unknown_group_and_leaves_the_context_usable(pki: _Pki) -> None:
    from wsskit._tls_groups import set_groups_list

    context = tls.server_context(pki.dev.cert, pki.dev.key)
    assert not set_groups_list(context, "no-such-group")
    assert set_groups_list(context, "prime256v1")
    client = tls.client_context(pki.dev.ca_cert)
    _offer_only(client, "X25519")
    assert isinstance(_handshake(context, client).client, ssl.SSLError)
    _offer_only(client, "prime256v1")
    _handshake(context, client).ok()
