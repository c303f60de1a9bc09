"""wsskit: WebSocket over TLS for Python, secure by default.

The names most programs need::

    import wsskit

    async with wsskit.serve(handler, "127.0.0.1", 8443, ssl=wsskit.tls.server_context(cert, key)) as server:
        await server.serve_forever()

    async with wsskit.connect("wss://example.com/chat") as ws:
        await ws.send("hello")
        print(await ws.recv())
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import sync, tls
from .asyncio import ClientConnection, Connection, Server, ServerConnection, connect, serve
from .browser import WebSocket
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    GiveUp,
    HandshakeError,
    InvalidHandshake,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .protocol.deflate import DeflateOptions
from .protocol.events import Reject, Request
from .protocol.headers import Headers
from .protocol.limits import Limits
from .reconnect import ReconnectPolicy

__all__ = [
    "__version__",
    "connect",
    "serve",
    "WebSocket",
    "sync",
    "Server",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Limits",
    "ReconnectPolicy",
    "DeflateOptions",
    "Headers",
    "Request",
    "Reject",
    "tls",
    "WebSocketError",
    "ProtocolError",
    "PayloadTooBig",
    "HandshakeError",
    "InvalidHandshake",
    "InvalidStatus",
    "NegotiationError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidState",
    "InvalidURI",
    "ProxyError",
    "GiveUp",
]
