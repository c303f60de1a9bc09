"""Authentication before the upgrade, over real sockets: 401 with a challenge, identity, expiry."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from tests.asyncio.raw import port_of
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import ConnectionClosedError, InvalidStatus
from wsskit.guards.auth import AuthChain, AuthGuard, JWTAuthenticator, StaticTokenAuthenticator

SECRET = b"0123456789abcdef0123456789abcdef"  # 32 bytes: as long as SHA-256 (RFC 7518 §3.2)
STATIC = "static-token-for-tests-0001"


def _chain() -> AuthChain:
    return AuthChain(
        [JWTAuthenticator(key=SECRET, algorithms=["HS256"]), StaticTokenAuthenticator({STATIC: "robot"})]
    )


async def _whoami(ws: ServerConnection) -> None:
    await ws.send(ws.identity.subject)
    async for _ in ws:
        pass


async def test_no_token_gets_401_with_a_challenge() -> None:
    async with serve(_whoami, "127.0.0.1", 0, ping_interval=None, guards=[AuthGuard(_chain())]) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port_of(server)}/", ping_interval=None)
    response = info.value.response
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="wsskit"')


async def test_bad_token_gets_invalid_token_and_is_never_echoed() -> None:
    bad = jwt.encode({"sub": "mallory", "exp": time.time() + 60}, b"x" * 32, algorithm="HS256")
    async with serve(_whoami, "127.0.0.1", 0, ping_interval=None, guards=[AuthGuard(_chain())]) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(
                f"ws://127.0.0.1:{port_of(server)}/",
                additional_headers={"Authorization": f"Bearer {bad}"},
                ping_interval=None,
            )
    response = info.value.response
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert bad.encode() not in response.body and bad not in response.headers["WWW-Authenticate"]


async def test_identity_reaches_the_handler_from_header_and_query() -> None:
    token = jwt.encode({"sub": "alice", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    async with serve(_whoami, "127.0.0.1", 0, ping_interval=None, guards=[AuthGuard(_chain())]) as server:
        base = f"ws://127.0.0.1:{port_of(server)}/"
        async with connect(
            base, additional_headers={"Authorization": f"Bearer {token}"}, ping_interval=None
        ) as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == "alice"
        async with connect(f"{base}?access_token={STATIC}", ping_interval=None) as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == "robot"


async def test_connection_closes_with_1008_when_the_token_expires() -> None:
    token = jwt.encode({"sub": "brief", "exp": int(time.time()) + 2}, SECRET, algorithm="HS256")
    async with (
        serve(_whoami, "127.0.0.1", 0, ping_interval=None, guards=[AuthGuard(_chain())]) as server,
        connect(
            f"ws://127.0.0.1:{port_of(server)}/",
            additional_headers={"Authorization": f"Bearer {token}"},
            ping_interval=None,
        ) as ws,
    ):
        assert await ws.recv() == "brief"
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.code == 1008 and info.value.reason == "credentials expired"
