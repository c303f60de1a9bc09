"""Bad-input campaign, close group: hostile Close frames and what follows them (RFC 6455 §5.5.1, §7.4).

A close code that may not appear on the wire fails the connection with
1002, a reason that is not UTF-8 with 1007; a valid Close is answered with
the same code and nothing after it counts. Each case expects the server's
Close (its code and, for answered closes, an empty reason) and then the end
of the connection with nothing after the Close;
:func:`~tests.security.campaign.guarded` checks the neighbour, the memory
bound and the log around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.security.campaign import (
    MIB,
    CampaignServer,
    client_frame,
    close_payload,
    frame,
    guarded,
    open_ws,
)

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

CLOSE, TEXT, PING, CONT = 0x8, 0x1, 0x9, 0x0

MEMORY = 2 * MIB


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes]
    code: int | None  # the code of the server's Close; None for a Close without payload
    reason: bytes | None = None  # the reason the server's Close must carry, when known
    control: bool = False  # a valid Close, beside the hostile ones


def close_with(code: int, reason: bytes = b"") -> Callable[[], bytes]:
    return lambda: client_frame(CLOSE, close_payload(code, reason))


# RFC 6455 §7.4.1/§7.4.2: 1005, 1006 and 1015 are never sent; 1004 and
# 1016-2999 are reserved; below 1000 and from 5000 on nothing is defined.
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

# Codes a peer may send: answered with the same code (RFC 6455 §5.5.1).
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014, 3000, 4999]

CASES = [
    *[Case(f"code-{code}-on-the-wire", close_with(code), 1002) for code in INVALID_CODES],
    Case("one-byte-payload", lambda: client_frame(CLOSE, b"\x03"), 1002),
    Case("reason-invalid-utf8", close_with(1000, b"bye \xff"), 1007),
    Case("reason-utf8-cut-in-half", close_with(1000, "bye €".encode()[:-1]), 1007),
    Case("reason-overlong-nul", close_with(1000, b"\xc0\x80"), 1007),
    Case("reason-124-bytes", lambda: frame(CLOSE, close_payload(1000, b"r" * 124)), 1002),
    *[Case(f"valid-code-{code}-answered", close_with(code, b"why"), code, b"", True) for code in VALID_CODES],
    Case("reason-123-bytes-answered", close_with(1000, b"r" * 123), 1000, b"", True),
    Case("empty-close-answered-empty", lambda: client_frame(CLOSE, b""), None, control=True),
    Case("data-after-close-ignored", lambda: close_with(1000)() + client_frame(TEXT, b"ignored"), 1000, b""),
    Case("ping-after-close-unanswered", lambda: close_with(1000)() + client_frame(PING, b"p"), 1000, b""),
    Case("second-close-ignored", lambda: close_with(1000)() + close_with(1001)(), 1000, b""),
    Case("garbage-after-close-ignored", lambda: close_with(1000)() + b"\xff" * 64, 1000, b""),
    Case(
        "close-inside-fragmented-message",
        lambda: client_frame(TEXT, b"part", fin=False) + close_with(1000)(),
        1000,
        b"",
    ),
    Case(
        "invalid-close-inside-fragmented-message",
        lambda: client_frame(TEXT, b"part", fin=False) + close_with(1005)(),
        1002,
    ),
]


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.id, marks=[CONTROL] if case.control else []) for case in CASES]
)
async def test_hostile_close(campaign: CampaignServer, case: Case) -> None:
    async with guarded(campaign, memory_kib=MEMORY), open_ws(campaign) as peer:
        await peer.send(case.build())
        received = await peer.expect_close(case.code, reason=case.reason)
        if case.code is None:
            assert received.payload == b""
