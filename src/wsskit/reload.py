"""Certificate reload without restart: :class:`CertificateReloader`.

A server keeps one :class:`ssl.SSLContext` for its whole life. When the
certificate is renewed (ACME, a Kubernetes secret, ``wsskit cert``), the
reloader loads the new pair into that same context: handshakes that start
afterwards present the new certificate, connections already open keep the
one they were made with, and nothing is restarted.

A pair is checked before it touches the live context. OpenSSL replaces a
context's certificate and key one after the other, and a key that does not
match leaves the context holding the new certificate without any key, after
which every handshake fails. So the reloader reads both files once, loads
that snapshot into a throwaway *probe* context first and only then into the
live one; a pair that is unreadable, mismatched, encrypted without a
password, expired or not yet valid is refused with an ERROR log, and the
certificate in use stays in use.

Three triggers, all running :meth:`~CertificateReloader.reload` on the
event loop's thread (an :class:`ssl.SSLContext` must not change under a
handshake running in another thread):

* :meth:`~CertificateReloader.check` reloads when the files changed;
* :meth:`~CertificateReloader.watch` calls it every few seconds;
* :meth:`~CertificateReloader.install_sighup` reloads on ``SIGHUP`` (Unix).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import signal
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Union

from cryptography import x509

from .tls import StrPath

__all__ = ["CertificateReloader", "Password"]

logger = logging.getLogger("wsskit.reload")

#: A private key's password, or a function returning it (as for
#: :meth:`ssl.SSLContext.load_cert_chain`).
Password = Union[str, bytes, Callable[[], Union[str, bytes]]]

# What identifies one version of a file: (mtime_ns, ctime_ns, size, inode),
# or None while the file cannot be read. ctime catches a copy that keeps the
# old modification time (cp -p); the inode catches a file renamed into place
# or a symlink switched to another target (certbot, Kubernetes secrets).
_FileSignature = tuple[int, int, int, int] | None


class CertificateReloader:
    """Reload a certificate and key into a live server context when they change.

    ``context`` is the server's context (from
    :func:`wsskit.tls.server_context`), already holding the pair that
    ``certfile`` and ``keyfile`` contain now; ``keyfile`` may be None when
    the key is in ``certfile``. ``password`` unlocks an encrypted key; without
    one an encrypted key is refused rather than prompted for on the
    terminal, which would block the server. Messages go to ``logger``
    (``wsskit.reload`` by default).

    Use it from the thread that runs the server's event loop. Raises
    :class:`OSError` (such as :class:`FileNotFoundError`) when the files
    cannot be read now.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        certfile: StrPath,
        keyfile: StrPath | None = None,
        *,
        password: Password | None = None,
        logger: logging.Logger = logger,
    ) -> None:
        self._context = context
        self._certfile = Path(certfile)
        self._keyfile = None if keyfile is None else Path(keyfile)
        self._password = password
        self._logger = logger
        # Take the files as they are for the pair the context holds, so the
        # first check() only reloads once they change.
        self._signature = self._stat()
        self._digest = _digest(*self._read())

    @property
    def certfile(self) -> Path:
        """The certificate chain file watched."""
        return self._certfile

    @property
    def keyfile(self) -> Path | None:
        """The private key file watched, or None when the key is in :attr:`certfile`."""
        return self._keyfile

    def check(self) -> bool:
        """Reload if the files changed since they were last read; return whether a new pair is in use.

        A change is a different modification or status-change time, size or
        inode. A pair that fails to load is not retried until the files
        change again, so a broken deployment is logged once, not every poll.
        """
        if self._stat() == self._signature:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Load the files into the live context now; return whether a new pair is in use.

        Files that hold the pair already in use change nothing (False). A
        pair that cannot be read or does not load into a fresh probe context
        (key not matching the certificate, a malformed file, an encrypted key
        without the password, a leaf certificate outside its validity
        period) is refused: an ERROR is logged, False is returned, and the
        certificate in use stays in use. Never raises for a bad pair.
        """
        # Stat before reading: if the files change in between, the next
        # check() sees a signature that differs from this one and reloads.
        self._signature = self._stat()
        try:
            cert_pem, key_pem = self._read()
        except OSError as exc:
            self._logger.error("cannot read the new certificate (%s); keeping the current one", exc)
            return False
        digest = _digest(cert_pem, key_pem)
        if digest == self._digest:
            self._logger.info("certificate in %s unchanged", self._certfile)
            return False
        try:
            leaf = _valid_leaf(cert_pem)
            self._load(cert_pem, key_pem)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._logger.error(
                "refusing the new certificate in %s: %s; keeping the current one", self._certfile, exc
            )
            return False
        self._digest = digest
        self._logger.info(
            "loaded certificate %s (serial %x, valid until %s) from %s",
            leaf.subject.rfc4514_string(),
            leaf.serial_number,
            leaf.not_valid_after_utc.isoformat(),
            self._certfile,
        )
        return True

    async def watch(self, interval: float = 2.0) -> None:
        """Call :meth:`check` every ``interval`` seconds until cancelled.

        Run it as a task next to the server (``asyncio.create_task(reloader.watch())``)
        and cancel it on shutdown. Raises :class:`ValueError` if ``interval``
        is not positive.
        """
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception:
                # A watcher that dies silently would stop all renewals.
                self._logger.exception("certificate check failed")

    def install_sighup(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Reload the certificate when the process receives ``SIGHUP``.

        ``loop`` (by default the running loop) runs :meth:`reload` for each
        signal, on its own thread. Remove the handler with
        ``loop.remove_signal_handler(signal.SIGHUP)``. Raises
        :class:`NotImplementedError` where there is no ``SIGHUP`` (Windows)
        or the loop cannot handle signals, and :class:`RuntimeError` when
        called from a thread other than the main thread.
        """
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            raise NotImplementedError("SIGHUP exists only on Unix; call reload() or use watch() instead")
        if loop is None:
            loop = asyncio.get_running_loop()
        loop.add_signal_handler(sighup, self._on_sighup)

    def _on_sighup(self) -> None:
        self._logger.info("SIGHUP: reloading the certificate from %s", self._certfile)
        self.reload()

    def _stat(self) -> tuple[_FileSignature, _FileSignature]:
        return _file_signature(self._certfile), (
            None if self._keyfile is None else _file_signature(self._keyfile)
        )

    def _read(self) -> tuple[bytes, bytes | None]:
        cert_pem = self._certfile.read_bytes()
        key_pem = None if self._keyfile is None else self._keyfile.read_bytes()
        return cert_pem, key_pem

    def _load(self, cert_pem: bytes, key_pem: bytes | None) -> None:
        """Load the snapshot into a probe context, then into the live one.

        ``load_cert_chain`` only reads files, so the snapshot is written to
        a private temporary directory (mode 0700, files 0600) for the few
        milliseconds of the two loads: both then see the very bytes that
        were checked, whatever happens to the real files meanwhile.
        """
        with tempfile.TemporaryDirectory(prefix="wsskit-reload-") as directory:
            cert_path = _write_private(Path(directory) / "cert.pem", cert_pem)
            key_path = None if key_pem is None else _write_private(Path(directory) / "key.pem", key_pem)
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            # The same security level as the live context, so a key too
            # small for it fails here rather than half way into the live load.
            probe.set_ciphers(f"DEFAULT:@SECLEVEL={self._context.security_level}")
            probe.load_cert_chain(cert_path, key_path, self._password_for_load())
            self._context.load_cert_chain(cert_path, key_path, self._password_for_load())

    def _password_for_load(self) -> Password:
        if self._password is not None:
            return self._password
        return _no_password


def _no_password() -> str:
    # Given to load_cert_chain in place of None, which would make OpenSSL
    # prompt on the terminal and block the event loop.
    raise ValueError("the private key is encrypted and no password was given")


def _file_signature(path: Path) -> _FileSignature:
    try:
        status = os.stat(path)  # follows symlinks: the target's identity counts
    except OSError:
        return None
    return status.st_mtime_ns, status.st_ctime_ns, status.st_size, status.st_ino


def _digest(cert_pem: bytes, key_pem: bytes | None) -> bytes:
    """Tell pairs apart without keeping the key's bytes around."""
    hasher = hashlib.sha256(cert_pem)
    if key_pem is not None:
        hasher.update(b"\0")
        hasher.update(key_pem)
    return hasher.digest()


def _valid_leaf(cert_pem: bytes) -> x509.Certificate:
    """Return the first certificate of the chain; ValueError if missing or outside its validity period.

    OpenSSL loads an expired certificate without complaint; serving it would
    fail every client's verification, so the current one is better kept.
    """
    leaf = x509.load_pem_x509_certificate(cert_pem)
    now = datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc < now:
        raise ValueError(f"the certificate expired on {leaf.not_valid_after_utc.isoformat()}")
    if leaf.not_valid_before_utc > now:
        raise ValueError(f"the certificate is not valid before {leaf.not_valid_before_utc.isoformat()}")
    return leaf


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return path
