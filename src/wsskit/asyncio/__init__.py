"""The asyncio front end: :func:`connect`, :func:`serve`, their connections, :func:`broadcast`.

Both drive the sans-I/O core in :mod:`wsskit.protocol` from an
:class:`asyncio.Protocol`.
"""

from __future__ import annotations

from .broadcast import BroadcastResult, broadcast
from .client import ClientConnection, connect
from .connection import Connection, Data, DataLike
from .server import Server, ServerConnection, serve

__all__ = [
    "connect",
    "serve",
    "broadcast",
    "BroadcastResult",
    "Server",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Data",
    "DataLike",
]
