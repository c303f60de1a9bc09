"""The asyncio front end: :func:`connect`, :func:`serve` and their connections.

Both drive the sans-I/O core in :mod:`wsskit.protocol` from an
:class:`asyncio.Protocol`.
"""

from __future__ import annotations

from .client import ClientConnection, connect
from .connection import Connection, Data, DataLike
from .server import Server, ServerConnection, serve

__all__ = [
    "connect",
    "serve",
    "Server",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Data",
    "DataLike",
]
