"""Guards on serve(): a refusal becomes the right HTTP answer before the upgrade."""

from __future__ import annotations

import asyncio

import pytest

from tests.asyncio.raw import echo, port_of
from wsskit.asyncio import ServerConnection, connect, serve
from wsskit.exceptions import InvalidStatus, RateLimited, Unauthorized
from wsskit.guards.origin import OriginPolicy
from wsskit.protocol.events import Request


async def test_origin_policy_as_a_guard() -> None:
    policy = OriginPolicy(["https://app.example.com"], allow_missing=True)
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, guards=[policy]) as server:
        uri = f"ws://127.0.0.1:{port_of(server)}/"
        async with connect(uri, origin="https://app.example.com:443", ping_interval=None) as ws:
            await ws.send("allowed")
            assert await ws.recv() == "allowed"
        async with connect(uri, ping_interval=None) as ws:  # no Origin: not a browser
            await ws.send("no origin")
            assert await ws.recv() == "no origin"
        with pytest.raises(InvalidStatus) as info:
            await connect(uri, origin="https://evil.example", ping_interval=None)
    assert info.value.response.status == 403
    assert b"origin not allowed" in info.value.response.body


async def test_async_guard_refusals_carry_their_headers() -> None:
    calls: list[str] = []

    async def guard(connection: ServerConnection, request: Request) -> None:
        calls.append(request.path)
        if request.path == "/limited":
            raise RateLimited("slow down", retry_after=2.5)
        if request.path == "/private":
            raise Unauthorized("token required", headers=(("WWW-Authenticate", 'Bearer realm="wsskit"'),))

    async with serve(echo, "127.0.0.1", 0, ping_interval=None, guards=[guard]) as server:
        base = f"ws://127.0.0.1:{port_of(server)}"
        with pytest.raises(InvalidStatus) as limited:
            await connect(f"{base}/limited", ping_interval=None)
        with pytest.raises(InvalidStatus) as private:
            await connect(f"{base}/private", ping_interval=None)
        async with connect(f"{base}/open", ping_interval=None) as ws:
            await ws.send("through")
            assert await asyncio.wait_for(ws.recv(), 5) == "through"
    assert limited.value.response.status == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert private.value.response.status == 401
    assert private.value.response.headers["WWW-Authenticate"] == 'Bearer realm="wsskit"'
    assert calls == ["/limited", "/private", "/open"]
