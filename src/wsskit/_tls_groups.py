"""Set a TLS context's key-exchange groups on Pythons whose ssl module cannot.

``SSLContext.set_groups`` arrives in Python 3.15. Before it, the ssl module
only has ``set_ecdh_curve``, which allows one curve and would lock out every
client lacking it, so OpenSSL's default list stays, with X448 and P-521 in
it: stronger than needed and outside Mozilla's profiles, so scanners that
check a profile strictly (sslyze) report the server as not compliant.

This module calls OpenSSL's ``SSL_CTX_set1_groups_list`` on the context's
``SSL_CTX`` directly, through ctypes. It only does so on CPython, where an
``SSLContext`` object starts with its ``SSL_CTX *`` right after the object
header (true of every CPython since 3.0), and only after checking that the
pointer it found answers ``SSL_CTX_get_options`` with the context's own
options. Anything unexpected leaves the context untouched and returns
False; nothing here can make a context weaker.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys

__all__ = ["set_groups_list"]

log = logging.getLogger("wsskit.tls")

# ssl.h: SSL_CTX_set1_groups_list(ctx, s) is SSL_CTX_ctrl(ctx, 92, 0, s).
_SSL_CTRL_SET_GROUPS_LIST = 92

_library: ctypes.CDLL | None = None
_loaded = False


def _openssl() -> ctypes.CDLL | None:
    # The libssl the _ssl module itself uses: dlsym on _ssl's own handle
    # searches its dependencies, so no other OpenSSL on the system is picked.
    global _library, _loaded
    if not _loaded:
        _loaded = True
        try:
            import _ssl

            library = ctypes.CDLL(getattr(_ssl, "__file__", None))
            library.SSL_CTX_get_options.restype = ctypes.c_uint64
            library.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            library.SSL_CTX_ctrl.restype = ctypes.c_long
            library.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        except (OSError, AttributeError, ImportError) as exc:
            log.debug("cannot reach OpenSSL through ctypes: %s", exc)
        else:
            _library = library
    return _library


def set_groups_list(context: ssl.SSLContext, groups: str) -> bool:
    """Set ``context``'s key-exchange groups to ``groups`` (OpenSSL's colon-separated list).

    Returns True when OpenSSL took the list, False when it refused it (a
    group this build lacks) or this interpreter gives no safe way to try.
    """
    if sys.implementation.name != "cpython" or not isinstance(context, ssl.SSLContext):
        return False
    library = _openssl()
    if library is None:
        return False
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        return False
    try:
        options_match = library.SSL_CTX_get_options(pointer) == int(context.options)
    except (OSError, ValueError):  # pragma: no cover - a broken pointer check
        return False
    if not options_match:
        log.debug("SSLContext layout not recognised; leaving OpenSSL's default groups")
        return False
    return bool(library.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) == 1)
