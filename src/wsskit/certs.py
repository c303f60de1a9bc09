"""A local development certificate authority, in the manner of mkcert.

:func:`ensure_dev_certificates` keeps a private CA and a server certificate
for ``localhost``, ``127.0.0.1`` and ``::1`` (or other hosts) in the user's
data folder, so ``wss://localhost`` works once the CA is trusted;
:func:`trust_instructions` tells how to trust it and :func:`install_trust`
does it on Debian-like systems. :func:`issue_client_certificate` makes client
certificates for mutual TLS and :func:`certificate_info` describes a
certificate for humans.

All keys are ECDSA P-256 and all signatures ECDSA with SHA-256, made by the
``cryptography`` package. Private keys are written with mode 0600 in a
directory created with mode 0700; every file is written to a temporary file
and renamed into place, under a lock, so concurrent processes never see half
a file nor a certificate from one run paired with a key from another.

The CA's key never leaves this machine and the CA may only sign leaf
certificates (``pathlen:0``); still, anyone who can read it can impersonate
any site to a browser that trusts it. Keep the folder private and never
trust a CA whose key you did not make yourself.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import ipaddress
import os
import secrets
import shlex
import shutil
import socket
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_HOSTS",
    "DevCertificates",
    "data_dir",
    "ensure_dev_certificates",
    "issue_client_certificate",
    "trust_instructions",
    "install_trust",
    "certificate_info",
]

#: The hosts a development server certificate covers unless told otherwise.
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

_CA_CERT_NAME = "ca.pem"
_CA_KEY_NAME = "ca-key.pem"
_CERT_NAME = "cert.pem"
_KEY_NAME = "key.pem"
_LOCK_NAME = ".lock"

_CA_LIFETIME = datetime.timedelta(days=3650)
# Mozilla's Server Side TLS asks for at most 90 days (modern; 366 for
# intermediate), and scanners such as sslyze check it; Apple platforms refuse
# more than 825 days even from a user-installed CA. Leaves are reissued on
# the next start once fewer than 30 days remain, and only the CA is trusted,
# so a short life costs users nothing.
_LEAF_LIFETIME = datetime.timedelta(days=90)
# Backdate notBefore a little so a client whose clock lags still accepts.
_BACKDATE = datetime.timedelta(hours=1)
# Files that expire sooner than this are replaced rather than reused.
_RENEW_BEFORE = datetime.timedelta(days=30)

# Debian/Ubuntu: update-ca-certificates picks up *.crt files here.
_SYSTEM_STORE = Path("/usr/local/share/ca-certificates")
_SYSTEM_CA_NAME = "wsskit-dev-ca.crt"

_FILE_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")
_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_")


@dataclass(frozen=True)
class DevCertificates:
    """Where the development CA and the server certificate live.

    ``ca_cert`` is the file to trust; ``cert`` and ``key`` are what a server
    loads (``server_context(cert, key)``).
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> DevCertificates:
        """Return the paths wsskit uses inside ``directory``."""
        return cls(
            directory=directory,
            ca_cert=directory / _CA_CERT_NAME,
            ca_key=directory / _CA_KEY_NAME,
            cert=directory / _CERT_NAME,
            key=directory / _KEY_NAME,
        )


def data_dir() -> Path:
    """Return wsskit's per-user data folder (it may not exist yet).

    ``$WSSKIT_HOME`` when set; otherwise ``$XDG_DATA_HOME/wsskit`` or
    ``~/.local/share/wsskit`` on Linux and other Unixes,
    ``~/Library/Application Support/wsskit`` on macOS and
    ``%LOCALAPPDATA%\\wsskit`` on Windows.
    """
    override = os.environ.get("WSSKIT_HOME")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "wsskit"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "wsskit"
    xdg = os.environ.get("XDG_DATA_HOME")
    # XDG Base Directory spec: relative paths are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "wsskit"
    return Path.home() / ".local" / "share" / "wsskit"


def ensure_dev_certificates(
    directory: Path | None = None,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
) -> tuple[DevCertificates, bool]:
    """Create or reuse the development CA and a server certificate for ``hosts``.

    ``directory`` defaults to ``data_dir() / "certs"``. Existing files are
    reused when they load, the keys match the certificates, nothing expires
    within 30 days, the server certificate is signed by the CA and it covers
    every host in ``hosts``. Otherwise the server certificate is issued anew
    for exactly ``hosts``, keeping the CA; the CA itself is only replaced when
    it is missing, broken or about to expire (which invalidates any trust
    placed in the old one).

    ``hosts`` are DNS names (``localhost``, ``*.example.test``, internationalised
    names are IDNA-encoded) and IP addresses (``127.0.0.1``, ``::1`` or
    ``[::1]``); names become DNS entries and addresses IP address entries of
    the subjectAltName, which is what clients match (RFC 6125, RFC 2818).

    Returns the paths and whether any file was written.
    Raises :class:`ValueError` for an empty or malformed host and
    :class:`OSError` when the directory or files cannot be written.
    """
    wanted = _parse_hosts(hosts)
    paths = DevCertificates.in_directory(_resolve_directory(directory))
    _make_private_directory(paths.directory)
    with _directory_lock(paths.directory):
        now = _now()
        created = False
        ca = _load_ca(paths, now)
        if ca is None:
            ca = _create_ca(paths, now)
            created = True
        if created or not _server_certificate_usable(paths, ca[0], wanted, now):
            _issue_leaf(
                ca,
                cert_path=paths.cert,
                key_path=paths.key,
                common_name=_leaf_common_name(wanted),
                usage=ExtendedKeyUsageOID.SERVER_AUTH,
                alt_names=wanted,
                now=now,
            )
            created = True
    return paths, created


def issue_client_certificate(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Issue a client certificate for mutual TLS, signed by the development CA.

    The certificate has ``name`` as its common name and the clientAuth
    extended key usage; a name that looks like an e-mail address is also put
    in the subjectAltName, which verifiers following the Web PKI rules (such
    as ``cryptography``'s ``ClientVerifier``) require. The CA is created
    first if it does not exist. The
    files are ``client-<name>.pem`` and ``client-<name>-key.pem`` (characters
    other than letters, digits, ``.``, ``_`` and ``-`` become ``_`` in the file
    name); an earlier certificate of the same name is replaced.

    Returns ``(certificate path, key path)``. Raises :class:`ValueError` if
    ``name`` is empty or longer than 64 characters (the X.509 limit for a
    common name) and :class:`OSError` when the files cannot be written.
    """
    if not name or len(name) > 64:
        raise ValueError("a client certificate name must be 1 to 64 characters long")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ValueError("a client certificate name must not contain control characters")
    stem = "".join(char if char in _FILE_NAME_CHARS else "_" for char in name).lstrip(".") or "_"
    paths = DevCertificates.in_directory(_resolve_directory(directory))
    _make_private_directory(paths.directory)
    cert_path = paths.directory / f"client-{stem}.pem"
    key_path = paths.directory / f"client-{stem}-key.pem"
    with _directory_lock(paths.directory):
        now = _now()
        ca = _load_ca(paths, now) or _create_ca(paths, now)
        _issue_leaf(
            ca,
            cert_path=cert_path,
            key_path=key_path,
            common_name=name,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            alt_names=_client_alt_names(name),
            now=now,
        )
    return cert_path, key_path


def trust_instructions(ca_cert: Path) -> str:
    """Return multi-line instructions for trusting the development CA ``ca_cert``."""
    path = str(ca_cert)
    quoted = shlex.quote(path)
    return "\n".join(
        [
            f"The wsskit development CA is {path}",
            "Trust it only on machines you control; never share its key (ca-key.pem).",
            "",
            "wsskit and Python clients:",
            f"  wsskit ... --cacert {quoted}",
            f"  wsskit.tls.client_context(cafile={path!r})",
            f"  SSL_CERT_FILE={quoted} python ...   (replaces the system CAs for Python's ssl module)",
            "curl:",
            f"  curl --cacert {quoted} https://localhost:PORT/",
            "Firefox:",
            "  Settings > Privacy & Security > Certificates > View Certificates > Authorities",
            f"  > Import, choose {path}, tick 'Trust this CA to identify websites'.",
            "Chrome / Chromium:",
            "  Settings > Privacy and security > Security > Manage certificates > Authorities",
            f"  > Import {path} (on Linux Chrome uses ~/.pki/nssdb, not the system store).",
            "Debian / Ubuntu system store (as root):",
            f"  cp {quoted} {_SYSTEM_STORE / _SYSTEM_CA_NAME} && update-ca-certificates",
            "  or: sudo wsskit cert trust --install",
            "macOS keychain:",
            "  sudo security add-trusted-cert -d -r trustRoot "
            f"-k /Library/Keychains/System.keychain {quoted}",
            "Windows (as administrator):",
            f"  certutil -addstore -f ROOT {quoted}",
        ]
    )


def install_trust(
    ca_cert: Path,
    *,
    store_dir: Path = _SYSTEM_STORE,
    update_command: Sequence[str] | None = ("update-ca-certificates",),
) -> str:
    """Add the development CA to the system trust store (Debian-like systems).

    Copies ``ca_cert`` to ``store_dir/wsskit-dev-ca.crt`` (replacing an
    earlier one) and runs ``update_command``, which rebuilds
    ``/etc/ssl/certs``; Python, curl and most tools then trust the CA.
    Firefox and Chrome keep their own stores: see :func:`trust_instructions`.
    ``store_dir`` and ``update_command`` exist for tests and unusual layouts;
    ``update_command=None`` only copies the file.

    Returns a description of what was done. Raises :class:`ValueError` if
    ``ca_cert`` is not a CA certificate, :class:`PermissionError` (with the
    manual instructions) when ``store_dir`` is not writable, typically
    because the caller is not root, :class:`FileNotFoundError` when the store
    or the update command is missing (not a Debian-like system), and
    :class:`OSError` when the update command fails.
    """
    certificate = _read_certificate(ca_cert)
    if not _is_ca(certificate):
        raise ValueError(f"{ca_cert} is not a CA certificate")
    instructions = trust_instructions(ca_cert)
    if not store_dir.is_dir():
        raise FileNotFoundError(
            f"{store_dir} does not exist: automatic installation supports Debian-like "
            f"systems only.\n\n{instructions}"
        )
    executable: str | None = None
    if update_command is not None:
        executable = shutil.which(update_command[0])
        if executable is None:
            raise FileNotFoundError(
                f"{update_command[0]} not found: automatic installation supports Debian-like "
                f"systems only.\n\n{instructions}"
            )
    if not os.access(store_dir, os.W_OK):
        raise PermissionError(
            f"cannot write to {store_dir}: installing a CA system-wide needs root "
            f"(try sudo).\n\n{instructions}"
        )

    target = store_dir / _SYSTEM_CA_NAME
    _write_atomic(target, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    done = [f"copied {ca_cert} to {target}"]
    if update_command is not None and executable is not None:
        try:
            # The command comes from our default or from the caller; no shell.
            result = subprocess.run(  # noqa: S603
                [executable, *update_command[1:]], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise OSError(f"could not run {update_command[0]}: {exc}") from exc
        if result.returncode != 0:
            raise OSError(
                f"{update_command[0]} failed with exit status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        done.append(f"ran {' '.join(update_command)}")
    done.append("browsers with their own certificate store (Firefox, Chrome on Linux) need a manual import")
    return "; ".join(done)


def certificate_info(path: Path) -> dict[str, str]:
    """Describe the (first) certificate in the PEM file ``path``.

    Returns a dict with ``subject``, ``issuer`` (RFC 4514 strings),
    ``serial`` (upper-case hex), ``not_before`` and ``not_after`` (ISO 8601,
    UTC), ``sans`` (comma-separated ``DNS:`` and ``IP:`` entries, empty if
    none) and ``sha256`` (the colon-separated SHA-256 fingerprint of the DER
    encoding, as browsers show it).

    Raises :class:`OSError` if the file cannot be read and
    :class:`ValueError` if it holds no PEM certificate.
    """
    certificate = _read_certificate(path)
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "X"),
        "not_before": _not_before(certificate).isoformat(),
        "not_after": _not_after(certificate).isoformat(),
        "sans": ", ".join(_describe_name(name) for name in _alt_names(certificate)),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    }


# --- hosts -------------------------------------------------------------------


def _parse_hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Return the subjectAltName entries for ``hosts``, without duplicates.

    Raises ValueError for an empty list or a malformed host.
    """
    if isinstance(hosts, str):
        hosts = [hosts]  # a lone string is one host, not a list of characters
    names: list[x509.GeneralName] = []
    for host in hosts:
        name = _parse_host(host)
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("at least one host is needed")
    return names


def _parse_host(host: str) -> x509.GeneralName:
    """Return a DNSName or IPAddress entry for one host; raise ValueError if malformed."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(f"a certificate cannot name a scoped address: {host!r}")
        return x509.IPAddress(address)
    name = text.rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"invalid host name {host!r}: {exc}") from None
    name = name.lower()
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # RFC 6125 §6.4.3: a wildcard only as the whole left-most label
    if len(name) > 253 or labels[-1].isdigit():
        raise ValueError(f"invalid host name {host!r}")
    for label in labels:
        if (
            not label
            or len(label) > 63
            or not set(label) <= _LABEL_CHARS
            or label.startswith("-")
            or label.endswith("-")
        ):
            raise ValueError(f"invalid host name {host!r}")
    return x509.DNSName(name)


def _client_alt_names(name: str) -> list[x509.GeneralName]:
    """Return an rfc822Name entry if ``name`` is an ASCII e-mail address, else nothing."""
    local, at, domain = name.rpartition("@")
    if not at or not local or not local.isascii() or "@" in local:
        return []
    try:
        parsed = _parse_host(domain)
    except ValueError:
        return []
    if not isinstance(parsed, x509.DNSName) or parsed.value.startswith("*"):
        return []
    return [x509.RFC822Name(f"{local}@{parsed.value}")]


def _leaf_common_name(names: Sequence[x509.GeneralName]) -> str:
    """Return a readable common name: the first DNS name, else the first address.

    Clients ignore the common name when a subjectAltName is present (RFC
    6125 §6.4.4); it is there for people reading the certificate.
    """
    for name in names:
        if isinstance(name, x509.DNSName) and len(name.value) <= 64:
            return name.value
    for name in names:
        if isinstance(name, x509.IPAddress):
            return str(name.value)
    return "wsskit development certificate"


def _describe_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    return f"{type(name).__name__}:{name.value}"


# --- the CA and its leaves ----------------------------------------------------


_CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _load_ca(paths: DevCertificates, now: datetime.datetime) -> _CA | None:
    """Return the CA certificate and key if both load, match and stay valid long enough."""
    try:
        certificate = _read_certificate(paths.ca_cert)
        key = _read_private_key(paths.ca_key)
        if not _is_ca(certificate) or not _key_matches(certificate, key):
            return None
        if not _valid_for_a_while(certificate, now):
            return None
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return certificate, key


def _create_ca(paths: DevCertificates, now: datetime.datetime) -> _CA:
    """Make a new CA key and self-signed certificate and write them."""
    key = ec.generate_private_key(ec.SECP256R1())
    owner = _owner()
    # A random id tells apart the CAs of several machines or re-creations in
    # a browser's certificate list, where only the name is shown.
    common_name = f"wsskit development CA {owner[:35]} {secrets.token_hex(4)}"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wsskit development CA"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, owner[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_LIFETIME)
        # RFC 5280 §4.2.1.9: a CA that signs only end-entity certificates.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # RFC 5280 §4.2.1.2 (required for CAs) and §4.2.1.1; OpenSSL's
        # X509_V_FLAG_X509_STRICT, default in Python 3.13+, checks both.
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(paths.ca_key, key)
    _write_atomic(paths.ca_cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate, key


def _server_certificate_usable(
    paths: DevCertificates,
    ca_certificate: x509.Certificate,
    wanted: Sequence[x509.GeneralName],
    now: datetime.datetime,
) -> bool:
    """Whether the existing server certificate can be reused as it is."""
    try:
        certificate = _read_certificate(paths.cert)
        key = _read_private_key(paths.key)
        if not _key_matches(certificate, key) or not _valid_for_a_while(certificate, now):
            return False
        # Raises ValueError/TypeError/InvalidSignature unless the CA signed it.
        certificate.verify_directly_issued_by(ca_certificate)
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            return False
        present = set(_alt_names(certificate))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature, x509.ExtensionNotFound):
        return False
    return all(name in present for name in wanted)


def _issue_leaf(
    ca: _CA,
    *,
    cert_path: Path,
    key_path: Path,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alt_names: Sequence[x509.GeneralName],
    now: datetime.datetime,
) -> None:
    """Make a key and an end-entity certificate signed by ``ca`` and write them."""
    ca_certificate, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wsskit development certificate"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _owner()[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    try:
        issuer_key_id = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id)
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    not_after = min(now + _LEAF_LIFETIME, _not_after(ca_certificate))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # An ECDSA key only signs (RFC 8813 / RFC 5480 §3).
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority_key_id, critical=False)
    )
    if alt_names:
        # RFC 2818 §3.1 / RFC 6125: clients match names and addresses here.
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alt_names)), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    _write_atomic(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _owner() -> str:
    """Return ``user@host`` for naming certificates, as far as it can be told."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in this environment (OSError, KeyError)
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _key_matches(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _valid_for_a_while(certificate: x509.Certificate, now: datetime.datetime) -> bool:
    """Whether the certificate is valid now and for at least _RENEW_BEFORE more."""
    return _not_before(certificate) <= now and _not_after(certificate) - now > _RENEW_BEFORE


def _alt_names(certificate: x509.Certificate) -> list[x509.GeneralName]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[x509.GeneralName] = []
    for name in extension.value:
        if isinstance(name, x509.DNSName):
            name = x509.DNSName(name.value.lower())
        names.append(name)
    return names


def _not_before(certificate: x509.Certificate) -> datetime.datetime:
    try:
        return certificate.not_valid_before_utc
    except AttributeError:  # cryptography < 42
        return certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def _not_after(certificate: x509.Certificate) -> datetime.datetime:
    try:
        return certificate.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        return certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _now() -> datetime.datetime:
    # Whole seconds: X.509 times have no fractions.
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


# --- files ---------------------------------------------------------------------


def _resolve_directory(directory: Path | None) -> Path:
    return Path(directory) if directory is not None else data_dir() / "certs"


def _make_private_directory(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if it does not exist.

    An existing directory keeps its mode: it may be one the user chose.
    """
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return  # another process made it first
    # mkdir's mode is filtered by the umask; state it exactly.
    os.chmod(directory, 0o700)


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` across processes.

    Without it two processes starting at once could each make a CA and
    leave the server certificate of one next to the CA of the other.
    """
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue  # LK_LOCK gives up after ten seconds; keep waiting
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` through a temporary file and a rename.

    Readers see the old file or the new one, never a part; the temporary file
    is created with mode 0600 so a key is never readable by others, even
    briefly.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        # Unencrypted, like mkcert's: a server must start without a prompt;
        # the file mode is the protection.
        serialization.NoEncryption(),
    )
    _write_atomic(path, data, 0o600)


def _read_certificate(path: Path) -> x509.Certificate:
    """Load the first PEM certificate of ``path``; ValueError if there is none."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM EC private key; ValueError or TypeError otherwise."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} does not hold an EC private key")
    return key
