"""Namespaces and permissions: lookup, validation, channel tokens, every permission kind."""

from __future__ import annotations

import pytest

from wsskit.channels import MemoryBackplane
from wsskit.channels.hub import Hub
from wsskit.channels.namespaces import (
    Namespace,
    Namespaces,
    allowed,
    channel_token,
    namespace_of,
    verify_channel_token,
)
from wsskit.guards.auth import Identity

KEY = b"s" * 32
ALICE = Identity("alice", "token")


def test_lookup_by_prefix() -> None:
    chat = Namespace("chat", presence=True)
    namespaces = Namespaces([chat])
    assert namespace_of("chat:room:1") == "chat"
    assert namespace_of("lobby") == ""
    assert namespaces.get("chat:room") is chat
    assert namespaces.get("lobby") == Namespace()
    assert namespaces.get("news:x") is None
    assert Namespaces([chat], default=None).get("lobby") is None
    with pytest.raises(ValueError):
        Namespaces([chat, Namespace("chat")])


@pytest.mark.parametrize(
    "options",
    [
        {"name": "has:colon"},
        {"name": "x" * 65},
        {"join_leave": True},
        {"history_size": -1},
        {"history_ttl": 0},
        {"history_ttl": float("inf")},
        {"idempotency_window": -1},
        {"subscribe": "everyone"},
        {"publish": [""]},
        {"history": 42},
    ],
)
def test_invalid_namespaces(options: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Namespace(**options)  # type: ignore[arg-type]


def test_retention_and_defaults() -> None:
    namespace = Namespace("n", history_size=7, history_ttl=9, idempotency_window=3, subscribe="authenticated")
    assert (namespace.retention.size, namespace.retention.ttl, namespace.retention.idempotency_window) == (
        7,
        9,
        3,
    )
    assert namespace.history_permission == "authenticated"
    assert namespace.presence_permission == "authenticated"
    assert Namespace().publish == "nobody"


async def test_permission_kinds() -> None:
    assert await allowed("any", None, "c")
    assert not await allowed("authenticated", None, "c")
    assert await allowed("authenticated", ALICE, "c")
    assert not await allowed("nobody", ALICE, "c")
    assert await allowed(["alice", "bob"], ALICE, "c")
    assert not await allowed(["bob"], ALICE, "c")
    assert not await allowed([], ALICE, "c")
    assert not await allowed(["alice"], None, "c")
    assert await allowed(lambda identity, channel: channel == "c", None, "c")
    assert not await allowed(lambda identity, channel: channel == "c", None, "d")

    async def check(identity: object, channel: str) -> bool:
        return identity is ALICE

    assert await allowed(check, ALICE, "c")
    assert not await allowed(check, None, "c")
    token = channel_token(KEY, "c", "alice")
    assert await allowed("token", ALICE, "c", token=token, token_key=KEY)
    assert not await allowed("token", ALICE, "c", token=None, token_key=KEY)
    assert not await allowed("token", ALICE, "c", token=token, token_key=None)
    assert not await allowed("token", None, "c", token=token, token_key=KEY)


def test_channel_tokens() -> None:
    token = channel_token(KEY, "private:1", "alice", ttl=60, now=1000)
    assert verify_channel_token(KEY, token, "private:1", "alice", now=1059)
    assert not verify_channel_token(KEY, token, "private:1", "alice", now=1060)  # expired
    assert not verify_channel_token(KEY, token, "private:2", "alice", now=1000)
    assert not verify_channel_token(KEY, token, "private:1", "bob", now=1000)
    assert not verify_channel_token(KEY, token, "private:1", None, now=1000)
    assert not verify_channel_token(b"t" * 32, token, "private:1", "alice", now=1000)
    expiry, _, mac = token.partition(".")
    assert not verify_channel_token(KEY, f"{int(expiry) + 100}.{mac}", "private:1", "alice", now=1000)
    for garbage in ("", ".", "abc", "x.y", "1" * 13 + ".y"):
        assert not verify_channel_token(KEY, garbage, "private:1", "alice", now=1000)
    anonymous = channel_token(KEY, "c", None, now=1000)
    assert verify_channel_token(KEY, anonymous, "c", None, now=1000)
    with pytest.raises(ValueError):
        channel_token(b"short", "c", "alice")


def test_hub_needs_a_token_key_for_token_namespaces() -> None:
    with pytest.raises(ValueError):
        Hub(MemoryBackplane(), [Namespace("p", subscribe="token")])
    with pytest.raises(ValueError):
        Hub(MemoryBackplane(), [], token_key=b"short")
    Hub(MemoryBackplane(), [Namespace("p", subscribe="token")], token_key=KEY)
