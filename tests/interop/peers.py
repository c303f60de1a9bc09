"""The interop peers' common parts: where the Node.js scripts live, and the paths every peer serves."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

__all__ = ["NODE_DIR", "Peer", "missing", "websockets_handler"]

#: package.json, package-lock.json, server.js and client.js; npm ci installs node_modules here.
NODE_DIR = Path(__file__).parent / "node"


@dataclass(frozen=True)
class Peer:
    """A peer's servers: ``ports[scheme][compression]``, compression being "deflate" or "plain"."""

    name: str
    ports: dict[str, dict[str, int]]

    def url(self, scheme: str, compression: str | None, path: str) -> str:
        port = self.ports[scheme]["deflate" if compression else "plain"]
        return f"{scheme}://127.0.0.1:{port}{path}"


def missing(reason: str) -> NoReturn:
    """Skip for lack of a peer; under CI=true, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing interop peer is a failure)", pytrace=False)
    pytest.skip(reason)


async def websockets_handler(ws: WsServerConnection) -> None:
    """Serve the same paths as node/server.js (see there)."""
    path = ws.request.path.partition("?")[0] if ws.request is not None else ""
    extensions = ",".join(extension.name for extension in ws.protocol.extensions)
    number = 0
    try:
        async for message in ws:
            number += 1
            if path == "/echo":
                await ws.send(message)
            elif path == "/describe":
                data = message.encode() if isinstance(message, str) else message
                description = {
                    "number": number,
                    "binary": isinstance(message, bytes),
                    "length": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "extensions": extensions,
                }
                await ws.send(json.dumps(description))
            elif path == "/close":
                await ws.close(4000, "bye")
            else:
                await ws.close(1008, "unknown path")
    except WsConnectionClosed:
        pass
