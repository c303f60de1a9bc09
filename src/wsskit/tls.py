"""TLS contexts for wsskit clients and servers, secure by default.

* :func:`client_context` verifies the server's certificate chain and host name
  and refuses anything older than TLS 1.2.
* :func:`server_context` follows Mozilla's *Server Side TLS* guidelines
  (version 5.7): the ``"intermediate"`` profile (TLS 1.2 and 1.3, ECDHE with
  AEAD ciphers only) or the ``"modern"`` profile (TLS 1.3 only).
* :func:`default_client_context` is the shared verifying context used for a
  ``wss://`` URI when no ``ssl=`` argument is given.

Both sides offer ALPN ``http/1.1``: the WebSocket opening handshake is an
HTTP/1.1 request (RFC 6455 §4.1), and announcing it keeps load balancers and
servers that also speak HTTP/2 from picking ``h2`` for this connection.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from typing import Literal, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ._tls_groups import set_groups_list

__all__ = [
    "ALPN_PROTOCOLS",
    "INTERMEDIATE_CIPHERS",
    "Profile",
    "ClientCert",
    "client_context",
    "default_client_context",
    "server_context",
    "PeerCertificate",
]

#: A file system path as the :mod:`ssl` module accepts it.
StrPath = Union[str, "os.PathLike[str]"]

#: The TLS profiles of :func:`server_context`, named after Mozilla's.
Profile = Literal["intermediate", "modern"]

#: Whether a mutual-TLS server refuses clients without a certificate.
ClientCert = Literal["required", "optional"]

#: ALPN protocol ids offered by both sides (RFC 7301).
ALPN_PROTOCOLS = ("http/1.1",)

#: TLS 1.2 cipher suites of Mozilla's intermediate profile, without the DHE
#: suites: finite-field DH needs a parameters file and buys nothing over ECDHE
#: for any client that speaks TLS 1.2. Forward secrecy and AEAD only.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# Key exchange groups to offer, best first: Mozilla's X25519, P-256 and P-384,
# led by the post-quantum hybrid X25519MLKEM768 where OpenSSL has it (3.5+),
# so restricting the list never drops protection OpenSSL would have given.
_GROUP_CHOICES = (
    "X25519MLKEM768:X25519:prime256v1:secp384r1",
    "X25519:prime256v1:secp384r1",
    "prime256v1:secp384r1",  # builds without X25519 (FIPS mode)
)


def client_context(
    cafile: StrPath | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    *,
    capath: StrPath | None = None,
    cadata: str | bytes | None = None,
) -> ssl.SSLContext:
    """Return a new client context that verifies the server.

    The context requires a certificate chain that leads to a trusted CA
    (``CERT_REQUIRED``) and a certificate that names the host the client
    connects to (``check_hostname``; IP addresses are matched against the
    certificate's IP address entries). TLS 1.2 is the minimum version.

    Trust comes from ``cafile``, ``capath`` or ``cadata`` when any is given
    (only those CAs are then trusted), otherwise from the system's default
    CAs, which honour the ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` environment
    variables. With ``certfile`` (and ``keyfile`` unless the key is in the
    same file) the client presents a certificate for mutual TLS.

    Raises :class:`FileNotFoundError` if a file is missing and
    :class:`ssl.SSLError` if a file does not hold what it should (or the key
    does not match the certificate).
    """
    if keyfile is not None and certfile is None:
        raise ValueError("keyfile given without certfile")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath, cadata=cadata)
    # create_default_context already sets these; state them so that a change
    # of default in a future Python cannot weaken wsskit silently.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    # RFC 8996 deprecates TLS 1.0 and 1.1.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


@functools.lru_cache(maxsize=1)
def default_client_context() -> ssl.SSLContext:
    """Return the process-wide default client context.

    It is built once by :func:`client_context` with the system's CAs and then
    shared: loading the system trust store takes milliseconds, too long to
    repeat for every connection, and sharing also shares TLS session state.
    Do not modify it; call :func:`client_context` for a context of your own.
    ``default_client_context.cache_clear()`` makes the next call rebuild it,
    for example after the system trust store or ``SSL_CERT_FILE`` changed.
    """
    return client_context()


def server_context(
    certfile: StrPath,
    keyfile: StrPath | None = None,
    *,
    profile: Profile = "intermediate",
    client_ca: StrPath | None = None,
    client_cert: ClientCert | None = None,
) -> ssl.SSLContext:
    """Return a new server context configured after Mozilla's Server Side TLS.

    ``profile="intermediate"`` (the default, Mozilla's recommendation for
    general-purpose servers) allows TLS 1.2 and 1.3 and, for TLS 1.2, only
    ECDHE key exchange with AES-GCM or ChaCha20-Poly1305. ``profile="modern"``
    allows TLS 1.3 only. Both disable compression, renegotiation and
    stateless session tickets, and let the client choose the cipher.

    ``certfile`` holds the certificate chain, leaf first; ``keyfile`` the
    private key, unless it is in ``certfile``. To replace the certificate
    without restarting, hand the context to
    :class:`wsskit.reload.CertificateReloader`, which checks a new pair
    before it loads it: later handshakes use the new one.

    Mutual TLS: with ``client_ca``, a PEM file of the CA certificates that
    issue client certificates, the server asks every client for a
    certificate. ``client_cert="required"`` (the default once ``client_ca``
    is given) refuses the handshake without one; ``client_cert="optional"``
    lets a client without a certificate in and leaves the decision to the
    application (``ssl_object.getpeercert()`` is then empty). In both modes
    a certificate that is presented must chain to ``client_ca`` and be fit
    for client authentication (an extended key usage without clientAuth is
    refused), or the handshake fails. Only ``client_ca`` is trusted for
    clients, never the system's CAs.

    Raises :class:`ValueError` for an unknown profile or ``client_cert``
    value, or ``client_cert`` without ``client_ca``;
    :class:`FileNotFoundError` if a file is missing and :class:`ssl.SSLError`
    if a file does not hold what it should.
    """
    if profile not in ("intermediate", "modern"):
        raise ValueError(f"unknown TLS profile {profile!r}; expected 'intermediate' or 'modern'")
    if client_cert not in (None, "required", "optional"):
        raise ValueError(f"unknown client_cert mode {client_cert!r}; expected 'required' or 'optional'")
    if client_cert is not None and client_ca is None:
        # Without trust anchors every client certificate would fail
        # verification, so "optional" would silently mean "none accepted".
        raise ValueError("client_cert needs client_ca: the CAs that issue client certificates")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if profile == "modern":
        # Mozilla modern: TLS 1.3 only. Its three cipher suites (AES-128-GCM,
        # AES-256-GCM, ChaCha20-Poly1305) are OpenSSL's TLS 1.3 default,
        # which the ssl module cannot change anyway.
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        # Mozilla intermediate: TLS 1.2 and 1.3 (RFC 8996 retires 1.0 and 1.1).
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED

    # No TLS compression: CRIME (Mozilla: "compression: off").
    context.options |= ssl.OP_NO_COMPRESSION
    # No renegotiation: TLS 1.3 has none, and for TLS 1.2 it is a
    # denial-of-service lever and the root of the 2009 prefix attack.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # Mozilla 5.x: every offered cipher is strong, so the client picks (a
    # phone without AES hardware prefers ChaCha20). Python's server contexts
    # turn server preference on; turn it off.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    # Mozilla's generated configurations turn session tickets off
    # ("ssl_session_tickets off"): the ticket key is never rotated by the ssl
    # module and lives as long as the process, so its theft would expose every
    # recorded session, defeating forward secrecy. Resumption still works
    # through the server-side session cache (session ids; stateful tickets
    # under TLS 1.3).
    context.options |= ssl.OP_NO_TICKET
    # Fresh ECDH keys per handshake (already OpenSSL's behaviour; stated for
    # older builds).
    context.options |= ssl.OP_SINGLE_ECDH_USE
    _set_groups(context)

    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    context.load_cert_chain(certfile, keyfile)

    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        # CERT_OPTIONAL still sends a CertificateRequest and still fails the
        # handshake on a certificate that does not verify; it only lets an
        # empty Certificate message through (RFC 8446 §4.4.2.4).
        context.verify_mode = ssl.CERT_OPTIONAL if client_cert == "optional" else ssl.CERT_REQUIRED
    return context


def _set_groups(context: ssl.SSLContext) -> None:
    """Restrict key exchange to Mozilla's groups (X25519, P-256, P-384).

    ``SSLContext.set_groups`` (Python 3.15+) takes a list; before it,
    :mod:`wsskit._tls_groups` sets the list on the context's OpenSSL object.
    Where neither works OpenSSL's default list stays: it holds nothing
    weaker than P-256, but also X448 and P-521, which Mozilla's profiles
    leave out and strict scanners (sslyze) report.
    """
    set_groups = getattr(context, "set_groups", None)
    for groups in _GROUP_CHOICES:
        if set_groups is None:
            if set_groups_list(context, groups):
                return
            continue
        try:
            set_groups(groups)
        except (ssl.SSLError, ValueError):
            continue  # a group this OpenSSL lacks; try a shorter list
        return


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The TLS client certificate a server verified.

    ``subject`` is the subject's distinguished name in RFC 4514 form
    (``CN=alice,O=Example``). ``sans`` are the subjectAltName entries with
    their kind, as OpenSSL writes them: ``DNS:host.example``,
    ``IP:192.0.2.1``, ``URI:spiffe://example.org/alice``,
    ``email:alice@example.org``, ``DirName:CN=...``. ``fingerprint_sha256`` is
    the SHA-256 of the DER encoding in lower-case hex, without colons.
    ``not_valid_after`` is the end of the validity period in seconds since the
    epoch.
    """

    subject: str
    sans: tuple[str, ...]
    fingerprint_sha256: str
    not_valid_after: float | None = None

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        """Describe the DER-encoded certificate ``der``.

        This does not verify the certificate: only pass one the TLS handshake
        verified. Raises :class:`ValueError` if ``der`` is not a certificate
        or its extensions are malformed.
        """
        certificate = x509.load_der_x509_certificate(der)
        try:
            alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans: tuple[str, ...] = ()
        else:
            sans = tuple(name for name in map(_describe_general_name, alt_names) if name is not None)
        return cls(
            subject=certificate.subject.rfc4514_string(),
            sans=sans,
            fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
            not_valid_after=certificate.not_valid_after_utc.timestamp(),
        )

    @classmethod
    def from_ssl_object(cls, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> PeerCertificate | None:
        """Describe the peer's certificate on a TLS connection after its handshake.

        ``ssl_object`` is what ``transport.get_extra_info("ssl_object")``
        returns. Returns None when the peer sent no certificate, or sent one
        the context did not verify (``CERT_NONE``): an unverified certificate
        proves nothing. Raises :class:`ValueError` if the handshake is not
        done.
        """
        # getpeercert() is an empty dict when the certificate was not
        # validated; only the binary form exists then, and it must not count.
        if not ssl_object.getpeercert():
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            return None
        return cls.from_der(der)


def _describe_general_name(name: x509.GeneralName) -> str | None:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    # otherName and registeredID have no text form anyone matches on.
    return None
