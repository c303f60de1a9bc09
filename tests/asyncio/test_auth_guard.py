"""Authentication before the upgrade, over real sockets: 401 with a challenge, identity, expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import jwt
import pytest

from tests.asyncio.raw import port_of
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import ConnectionClosedError, InvalidStatus
from wsskit.guards.auth import (
    AuthChain,
    AuthGuard,
    JWTAuthenticator,
    StaticTokenAuthenticator,
    TokenExtractor,
)
from wsskit.guards.origin import OriginPolicy

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


def _jwt(subject: str, lifetime: float) -> str:
    return jwt.encode({"sub": subject, "exp": time.time() + lifetime}, SECRET, algorithm="HS256")


async def test_refresh_extends_an_open_connection_past_its_first_token() -> None:
    guard = AuthGuard(_chain())

    async def handler(ws: ServerConnection) -> None:
        # The application's own message carries the new token.
        async for message in ws:
            assert isinstance(message, str)
            try:
                identity = await guard.refresh(ws, message)
            except Exception as exc:
                await ws.send(f"refused: {type(exc).__name__}")
            else:
                await ws.send(f"refreshed: {identity.subject}")

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, guards=[guard]) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        headers = {"Authorization": f"Bearer {_jwt('alice', 1.0)}"}
        async with connect(uri, additional_headers=headers, ping_interval=None) as ws:
            await ws.send("not-a-token")
            assert await ws.recv() == "refused: InvalidToken"
            await ws.send(_jwt("mallory", 60))
            assert await ws.recv() == "refused: Forbidden"
            await ws.send(_jwt("alice", 60))
            assert await ws.recv() == "refreshed: alice"
            # Past the first token's expiry the connection is still open.
            await asyncio.sleep(1.3)
            await ws.send(_jwt("alice", 60))
            assert await ws.recv() == "refreshed: alice"
        # Without a refresh a short-lived token closes it with 1008.
        headers = {"Authorization": f"Bearer {_jwt('alice', 0.5)}"}
        async with connect(uri, additional_headers=headers, ping_interval=None) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(ws.recv(), 5)
        assert (info.value.code, info.value.reason) == (1008, "credentials expired")


async def test_a_token_offered_as_a_subprotocol_is_never_selected() -> None:
    token = _jwt("alice", 60)

    def pick_last(connection: ServerConnection, offered: Sequence[str]) -> str | None:
        # A careless selector that would echo whatever came last.
        return offered[-1] if offered else None

    async with (
        serve(
            _whoami,
            "127.0.0.1",
            0,
            ping_interval=None,
            guards=[AuthGuard(_chain())],
            select_subprotocol=pick_last,
        ) as server,
        connect(
            f"ws://127.0.0.1:{port_of(server)}/",
            subprotocols=["chat.v1", f"access_token.{token}"],
            ping_interval=None,
        ) as ws,
    ):
        assert await ws.recv() == "alice"
        assert ws.subprotocol == "chat.v1"
        assert token not in str(ws.response.headers if ws.response else "")


async def test_cookie_tokens_need_an_origin_policy() -> None:
    cookies = TokenExtractor(("cookie",))
    chain = AuthChain([JWTAuthenticator(key=SECRET, algorithms=["HS256"], extractor=cookies)])
    with pytest.raises(ValueError, match="Cross-Site WebSocket Hijacking"):
        AuthGuard(chain)
    guard = AuthGuard(chain, origin_policy=OriginPolicy(["https://app.example"]))
    async with serve(_whoami, "127.0.0.1", 0, ping_interval=None, guards=[guard]) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        cookie = {"Cookie": f"access_token={_jwt('alice', 60)}"}
        async with connect(
            uri, additional_headers=cookie, origin="https://app.example", ping_interval=None
        ) as ws:
            assert await ws.recv() == "alice"
        # The same cookie from another site's page: refused before authentication.
        with pytest.raises(InvalidStatus) as info:
            await connect(uri, additional_headers=cookie, origin="https://evil.example", ping_interval=None)
        assert info.value.response.status == 403
