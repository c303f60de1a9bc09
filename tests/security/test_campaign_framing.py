"""Bad-input campaign, framing group: malformed frames after a valid upgrade (RFC 6455 §5).

Each case opens ``/echo`` with a raw client, sends hostile bytes and expects
the server's Close with one exact code (and the end of the connection);
:func:`~tests.security.campaign.guarded` checks the neighbour, the memory
bound and the log around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.security.campaign import MIB, CampaignServer, client_frame, frame, guarded, open_ws

# Nothing here is bigger than one small frame, except the one 70 KiB frame
# with a non-minimal header: 2 MiB of peak growth is a generous bound.
MEMORY = 2 * MIB

DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes]
    code: int
    deflate: bool = False
    echoes: int = 0  # messages the server echoes before it closes


def start_text() -> bytes:
    return client_frame(TEXT, b"start", fin=False)


CASES = [
    Case("unmasked-text", lambda: frame(TEXT, b"hello", mask=False), 1002),
    Case("unmasked-close", lambda: frame(CLOSE, b"\x03\xe8", mask=False), 1002),
    Case("unmasked-ping", lambda: frame(PING, b"", mask=False), 1002),
    Case("rsv1-without-extension", lambda: frame(TEXT, b"hello", rsv1=True), 1002),
    Case("rsv2", lambda: frame(TEXT, b"hello", rsv2=True), 1002),
    Case("rsv3", lambda: frame(TEXT, b"hello", rsv3=True), 1002),
    Case("rsv2-with-deflate", lambda: frame(TEXT, b"hello", rsv2=True), 1002, deflate=True),
    *[Case(f"reserved-opcode-{op:#x}", lambda op=op: frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7)],
    *[
        Case(f"reserved-opcode-{op:#x}", lambda op=op: frame(op, b"x"), 1002)
        for op in (0xB, 0xC, 0xD, 0xE, 0xF)
    ],
    Case("fragmented-ping", lambda: frame(PING, b"a", fin=False) + frame(CONT, b"b"), 1002),
    Case("fragmented-pong", lambda: frame(PONG, b"a", fin=False), 1002),
    Case("fragmented-close", lambda: frame(CLOSE, b"\x03\xe8", fin=False), 1002),
    Case("ping-126-bytes", lambda: frame(PING, b"p" * 126), 1002),
    Case("pong-126-bytes", lambda: frame(PONG, b"p" * 126), 1002),
    Case("close-126-bytes", lambda: frame(CLOSE, b"\x03\xe8" + b"r" * 124), 1002),
    Case("ping-length-in-16-bits", lambda: frame(PING, b"p", length_form=16), 1002),
    Case("control-rsv1-with-deflate", lambda: frame(PING, b"p", rsv1=True), 1002, deflate=True),
    Case("non-minimal-16-bit-length", lambda: frame(TEXT, b"hello", length_form=16), 1002),
    Case("non-minimal-64-bit-length", lambda: frame(TEXT, b"hello", length_form=64), 1002),
    Case("non-minimal-64-bit-for-65535", lambda: frame(BINARY, b"b" * 65535, length_form=64), 1002),
    Case("length-top-bit-set", lambda: frame(BINARY, b"", length=2**63 + 5, length_form=64), 1002),
    Case("length-2-63-minus-1", lambda: frame(BINARY, b"", length=2**63 - 1, length_form=64), 1009),
    Case("continuation-without-start", lambda: frame(CONT, b"orphan"), 1002),
    Case("final-continuation-without-start", lambda: frame(CONT, b"orphan", fin=True), 1002),
    Case("text-inside-fragmented-text", lambda: start_text() + client_frame(TEXT, b"new"), 1002),
    Case("binary-inside-fragmented-text", lambda: start_text() + client_frame(BINARY, b"new"), 1002),
    Case(
        "rsv1-on-continuation-with-deflate",
        lambda: start_text() + frame(CONT, b"x", rsv1=True),
        1002,
        deflate=True,
    ),
    Case(
        "violation-after-valid-message",
        lambda: client_frame(TEXT, b"first") + frame(TEXT, b"second", mask=False),
        1002,
        echoes=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_malformed_frame(campaign: CampaignServer, case: Case) -> None:
    async with (
        guarded(campaign, memory_kib=MEMORY),
        open_ws(campaign, add=DEFLATE if case.deflate else ()) as peer,
    ):
        if case.deflate:
            assert peer.response is not None
            assert peer.response.get("Sec-WebSocket-Extensions") == "permessage-deflate"
        await peer.send(case.build())
        await peer.expect_close(case.code, before=case.echoes)
        echoes = [(received.opcode, received.payload) for received in peer.frames_before_close]
        assert echoes == [(TEXT, b"first")][: case.echoes]
