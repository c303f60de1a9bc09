"""Test-only proxies: an HTTP CONNECT proxy (plain or TLS) and a SOCKS5 proxy, on asyncio streams.

They are real proxies on loopback: they parse what the client sends, check
credentials, connect to the target and relay bytes both ways. Each counts
the tunnels it opened and keeps what it saw, so that tests can prove the
traffic went through it (and that it saw only ciphertext).
"""

from __future__ import annotations

from .base import Tunnel, TunnelingProxy
from .http_connect import HttpConnectProxy
from .socks5 import Socks5Proxy

__all__ = ["HttpConnectProxy", "Socks5Proxy", "Tunnel", "TunnelingProxy"]
