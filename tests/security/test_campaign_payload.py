"""Bad-input campaign, payload group: oversized messages, invalid UTF-8, hostile compressed data.

The server allows messages of 1 MiB (``max_size``) and negotiates
permessage-deflate (RFC 7692) when offered. Each case expects one exact
close code; :func:`~tests.security.campaign.guarded` checks the neighbour,
the memory bound and the log around it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import pytest

from tests.security.campaign import (
    MIB,
    TIMEOUT,
    CampaignServer,
    client_frame,
    frame,
    guarded,
    open_ws,
)

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

TEXT, BINARY, CONT = 0x1, 0x2, 0x0

MAX_SIZE = 2**20  # campaign_server.MAX_SIZE, checked against the server's JSON line below

DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]
DEFLATE_WINDOW_8 = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=8")]

# The server holds at most one message of 1 MiB plus the frame being read;
# 4 MiB leaves room for the allocator, and is 25 times less than the bomb.
MEMORY = 4 * MIB


def deflate(data: bytes, *, wbits: int = 15) -> bytes:
    """Compress one message as RFC 7692 §7.2.1 says: raw DEFLATE, sync flush, tail removed."""
    encoder = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@functools.cache
def bomb() -> bytes:
    """100 MiB of zeros, compressed: about 100 KiB on the wire."""
    payload = deflate(bytes(100 * MIB * 1024))
    assert len(payload) < 200_000
    return payload


def fragments(opcode: int, payload: bytes, size: int, *, rsv1: bool = False) -> bytes:
    """``payload`` as one message in frames of ``size`` bytes."""
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    out = []
    for index, chunk in enumerate(chunks):
        first = index == 0
        out.append(
            client_frame(opcode if first else CONT, chunk, fin=index == len(chunks) - 1, rsv1=rsv1 and first)
        )
    return b"".join(out)


def cut_mid_frame() -> bytes:
    """The first 10 payload bytes (an invalid byte among them) of a 1000-byte text frame."""
    whole = frame(TEXT, b"ab\xff" + b"x" * 997)
    return whole[: 2 + 2 + 4 + 10]


def bfinal_then_junk() -> bytes:
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    return encoder.compress(b"hello") + encoder.flush(zlib.Z_FINISH) + b"junk after the final block"


def far_back_reference() -> bytes:
    """Two messages from one compressor with a 32 KiB window, against a peer that agreed on 256 bytes.

    The second message repeats the first, which compresses to a reference
    1000 bytes back into the previous message: beyond the 256-byte window
    the server keeps between messages.
    """
    chunk = os.urandom(1000)
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    messages = []
    for _ in range(2):
        out = encoder.compress(chunk) + encoder.flush(zlib.Z_SYNC_FLUSH)
        messages.append(client_frame(BINARY, out[:-4], rsv1=True))
    assert len(messages[1]) < 100  # the reference really is there
    return b"".join(messages)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes]
    code: int
    extensions: tuple[tuple[str, str], ...] = ()
    echoes: int = 0  # messages the server echoes before it closes


CASES = [
    # -- size (1009)
    Case("frame-announces-1MiB-plus-1", lambda: frame(BINARY, b"", length=MAX_SIZE + 1) + b"x" * 4096, 1009),
    Case("frame-announces-4GiB", lambda: frame(BINARY, b"", length=2**32), 1009),
    Case("text-frame-announces-2MiB", lambda: frame(TEXT, b"", length=2 * MAX_SIZE), 1009),
    Case("fragments-sum-over-1MiB", lambda: fragments(BINARY, os.urandom(MAX_SIZE + 1), 65536), 1009),
    Case(
        "compression-bomb-100MiB",
        lambda: client_frame(BINARY, bomb(), rsv1=True),
        1009,
        tuple(DEFLATE),
    ),
    Case(
        "compression-bomb-100MiB-text",
        lambda: client_frame(TEXT, bomb(), rsv1=True),
        1009,
        tuple(DEFLATE),
    ),
    Case(
        "compression-bomb-in-fragments",
        lambda: fragments(BINARY, bomb(), 4096, rsv1=True),
        1009,
        tuple(DEFLATE),
    ),
    Case(
        "compressed-1MiB-plus-1",
        lambda: client_frame(BINARY, deflate(bytes(MAX_SIZE + 1)), rsv1=True),
        1009,
        tuple(DEFLATE),
    ),
    # -- UTF-8 (1007)
    Case("invalid-utf8-byte", lambda: client_frame(TEXT, b"abc\xffdef"), 1007),
    Case("invalid-utf8-overlong-slash", lambda: client_frame(TEXT, b"\xc0\xaf"), 1007),
    Case("invalid-utf8-surrogate", lambda: client_frame(TEXT, b"\xed\xa0\x80"), 1007),
    Case("invalid-utf8-above-10ffff", lambda: client_frame(TEXT, b"\xf4\x90\x80\x80"), 1007),
    Case("invalid-utf8-truncated-at-end", lambda: client_frame(TEXT, b"euro \xe2\x82"), 1007),
    Case(
        "invalid-utf8-split-across-fragments",
        lambda: client_frame(TEXT, b"euro \xe2\x82", fin=False) + client_frame(CONT, b"\x28 not a euro"),
        1007,
    ),
    Case(
        "invalid-utf8-in-last-fragment",
        lambda: client_frame(TEXT, b"fine", fin=False) + client_frame(CONT, b"\xfe"),
        1007,
    ),
    Case("invalid-utf8-mid-frame-fail-fast", cut_mid_frame, 1007),
    Case(
        "invalid-utf8-compressed",
        lambda: client_frame(TEXT, deflate(b"abc\xff"), rsv1=True),
        1007,
        tuple(DEFLATE),
    ),
    # -- hostile DEFLATE data (1007)
    Case(
        "deflate-garbage",
        lambda: client_frame(BINARY, b"\xff\xff\xff\xff\xff\xff", rsv1=True),
        1007,
        tuple(DEFLATE),
    ),
    Case(
        "deflate-bfinal-then-junk",
        lambda: client_frame(BINARY, bfinal_then_junk(), rsv1=True),
        1007,
        tuple(DEFLATE),
    ),
    Case(
        "deflate-reference-beyond-window-8",
        far_back_reference,
        1007,
        tuple(DEFLATE_WINDOW_8),
        echoes=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_hostile_payload(campaign: CampaignServer, case: Case) -> None:
    assert campaign.info["max_size"] == MAX_SIZE
    data = case.build()
    async with guarded(campaign, memory_kib=MEMORY), open_ws(campaign, add=case.extensions) as peer:
        if case.extensions:
            assert peer.response is not None
            offered = case.extensions[0][1]
            assert peer.response.get("Sec-WebSocket-Extensions") == offered
        # Written in the background: the server may close before it has read it all.
        writer = asyncio.create_task(_write(peer.writer, data))
        try:
            await peer.expect_close(case.code, before=case.echoes)
            assert len(peer.frames_before_close) == case.echoes
        finally:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    with suppress(ConnectionError):
        writer.write(data)
        await asyncio.wait_for(writer.drain(), TIMEOUT)


@CONTROL
async def test_message_of_exactly_1MiB_is_echoed(campaign: CampaignServer) -> None:
    """Boundary of the size cases: 1 MiB in 16 fragments is a whole, legal message."""
    message = os.urandom(MAX_SIZE)
    async with guarded(campaign, memory_kib=MEMORY + 2 * MIB), open_ws(campaign) as peer:
        await peer.send(fragments(BINARY, message, 65536))
        echoed = await peer.read_frame()
        assert (echoed.opcode, echoed.fin, echoed.payload) == (BINARY, True, message)


@CONTROL
async def test_valid_utf8_split_across_fragments_is_echoed(campaign: CampaignServer) -> None:
    """Boundary of the UTF-8 cases: a character split between two fragments is valid."""
    async with guarded(campaign, memory_kib=MEMORY), open_ws(campaign) as peer:
        await peer.send(client_frame(TEXT, b"euro \xe2\x82", fin=False) + client_frame(CONT, b"\xac!"))
        echoed = await peer.read_frame()
        assert (echoed.opcode, echoed.payload) == (TEXT, "euro €!".encode())
