"""Fixtures for channels over real TLS sockets: certificates, a served hub, a JSON client."""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.asyncio.raw import port_of
from wsskit.asyncio import ClientConnection, connect, serve
from wsskit.channels import SUBPROTOCOL, Hub
from wsskit.guards.auth import AuthChain, AuthGuard, StaticTokenAuthenticator

#: Bearer tokens the test servers accept, by subject. Without one a connection is anonymous.
TOKENS = {"alice": "alice-token-for-channel-tests-01", "bob": "bob-token-for-channel-tests-0001"}
#: How long a test waits for one message before failing.
TIMEOUT = 10.0


@asynccontextmanager
async def serving(hub: Hub, server_ssl: ssl.SSLContext, **options: Any) -> AsyncIterator[str]:
    """Serve ``hub`` over wss:// on a free port, with optional bearer-token auth; yield the URL."""
    guard = AuthGuard(
        AuthChain([StaticTokenAuthenticator({t: s for s, t in TOKENS.items()})], required=False)
    )
    options.setdefault("ping_interval", None)
    options.setdefault("subprotocols", hub.subprotocols)
    async with hub, serve(hub.handler, "127.0.0.1", 0, ssl=server_ssl, guards=[guard], **options) as server:
        yield f"wss://127.0.0.1:{port_of(server)}/channels"


class Client:
    """A channels client speaking plain JSON over a wsskit connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: collections.deque[dict[str, Any]] = collections.deque()
        self._next_id = 0

    async def _recv(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        assert isinstance(message, str)
        decoded = json.loads(message)
        assert isinstance(decoded, dict)
        return decoded

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a command; return its reply, keeping the pushes that came first."""
        self._next_id += 1
        id = self._next_id
        await self.ws.send(json.dumps({"id": id, "cmd": cmd, **fields}))
        while True:
            message = await self._recv()
            if message.get("id") == id:
                return message
            assert "push" in message, message
            self.pushes.append(message)

    async def result(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = await self.call(cmd, **fields)
        assert "result" in reply, reply
        result = reply["result"]
        assert isinstance(result, dict)
        return result

    async def error(self, cmd: str, **fields: Any) -> int:
        reply = await self.call(cmd, **fields)
        assert "error" in reply, reply
        code = reply["error"]["code"]
        assert isinstance(code, int)
        return code

    async def push(self) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.popleft()
        message = await self._recv()
        assert "push" in message, message
        return message


@asynccontextmanager
async def client(
    url: str, client_ssl: ssl.SSLContext, user: str | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A connected :class:`Client`, as ``user`` (a key of TOKENS) or anonymous."""
    headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user is not None else None
    options.setdefault("subprotocols", [SUBPROTOCOL])
    async with connect(url, ssl=client_ssl, additional_headers=headers, ping_interval=None, **options) as ws:
        yield Client(ws)
