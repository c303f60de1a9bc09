"""wsskit's asyncio client against other libraries' servers: Node.js ``ws`` and python-websockets.

Every test runs against each peer, over ws:// and wss:// (the dev CA from
the fixtures), with and without permessage-deflate.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.interop.peers import Peer
from wsskit.asyncio import connect
from wsskit.asyncio.client import _Connect
from wsskit.exceptions import ConnectionClosedError

pytestmark = pytest.mark.interop

LARGE = 4 * 2**20

MESSAGES: list[str | bytes] = [
    "text",
    "ünïcødé ✓ 🎉",
    b"\x00\x01binary\xff",
    "",
    b"",
    os.urandom(70_000),  # a 64-bit length
    "compressible " * 10_000,
]


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["deflate", None], ids=["deflate", "plain"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def _connect(
    peer: Peer, scheme: str, compression: str | None, path: str, client_ssl: ssl.SSLContext, **options: Any
) -> _Connect:
    return connect(
        peer.url(scheme, compression, path),
        ssl=client_ssl if scheme == "wss" else None,
        compression=compression,
        ping_interval=None,
        proxy=None,
        **options,
    )


def _description(number: int, data: bytes, *, binary: bool, compression: str | None) -> dict[str, Any]:
    return {
        "number": number,
        "binary": binary,
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "extensions": "permessage-deflate" if compression else "",
    }


async def test_text_and_binary_messages_round_trip(
    peer: Peer, scheme: str, compression: str | None, client_ssl: ssl.SSLContext
) -> None:
    async with _connect(peer, scheme, compression, "/echo", client_ssl) as ws:
        # Parameters (window bits) are the peer's choice; the extension is not.
        assert [value.split(";")[0] for value in ws.extensions] == (
            ["permessage-deflate"] if compression else []
        )
        for message in MESSAGES:
            await ws.send(message)
            echoed = await ws.recv()
            assert type(echoed) is type(message)
            assert echoed == message
        assert await ws.ping(b"are you there") >= 0
    assert ws.close_code == 1000


async def test_a_4_mib_message_both_ways(
    peer: Peer, scheme: str, compression: str | None, client_ssl: ssl.SSLContext
) -> None:
    large_binary = os.urandom(LARGE)
    large_text = ("wsskit interop ✓ " * (LARGE // 16))[: LARGE // 2]
    async with _connect(peer, scheme, compression, "/echo", client_ssl, max_size=2 * LARGE) as ws:
        await ws.send(large_binary)
        assert await ws.recv() == large_binary
        await ws.send(large_text)
        assert await ws.recv() == large_text


async def test_fragments_make_one_message_for_the_peer(
    peer: Peer, scheme: str, compression: str | None, client_ssl: ssl.SSLContext
) -> None:
    async with _connect(peer, scheme, compression, "/describe", client_ssl) as ws:
        binary_parts = [bytes([i]) * 1000 for i in range(3)]
        await ws.send(binary_parts)
        assert json.loads(await ws.recv()) == _description(
            1, b"".join(binary_parts), binary=True, compression=compression
        )

        text_parts = ["frag", "men", "ted ✓"]
        await ws.send(text_parts)
        assert json.loads(await ws.recv()) == _description(
            2, "fragmented ✓".encode(), binary=False, compression=compression
        )

        async def produced() -> AsyncIterator[bytes]:
            for i in range(4):
                yield bytes([i]) * 50_000

        await ws.send(produced())
        expected = b"".join(bytes([i]) * 50_000 for i in range(4))
        # Number 3: each fragmented message above counted once.
        assert json.loads(await ws.recv()) == _description(3, expected, binary=True, compression=compression)


async def test_the_peers_close_code_and_reason(peer: Peer, scheme: str, client_ssl: ssl.SSLContext) -> None:
    async with _connect(peer, scheme, None, "/close", client_ssl) as ws:
        await ws.send("close, please")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
    assert (info.value.code, info.value.reason) == (4000, "bye")
    assert (ws.close_code, ws.close_reason) == (4000, "bye")
