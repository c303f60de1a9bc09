"""Bad-input campaign, handshake group: hostile HTTP upgrade requests over real TLS.

Each case sends one request head and expects one exact HTTP status (with the
headers that status must carry), then the end of the connection. Around every
case :func:`~tests.security.campaign.guarded` checks that a neighbour on
``/echo`` still echoes, that the server's peak memory stayed within the
bound, and that its log shows no ERROR or traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import pytest

from tests.security.campaign import (
    MIB,
    CampaignServer,
    client_frame,
    default_headers,
    guarded,
    http_request,
    open_peer,
)

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

# A hostile head costs the server a buffer of at most a few lines: 2 MiB of
# peak growth is already far more than any of these requests can justify.
MEMORY = 2 * MIB


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    build: Callable[[int], bytes]
    headers: dict[str, str] = field(default_factory=dict)
    memory: int = MEMORY


def req(**kwargs: object) -> Callable[[int], bytes]:
    """An upgrade request to /echo changed by ``kwargs`` (see :func:`http_request`)."""
    return lambda port: http_request(port, **kwargs)  # type: ignore[arg-type]


def raw(text: str) -> Callable[[int], bytes]:
    """A request head written out; ``{port}`` and ``{key}`` are filled in."""
    return lambda port: text.format(port=port, key=default_headers(port)[3][1]).encode("latin-1")


def with_fields(count: int) -> Callable[[int], bytes]:
    """A valid upgrade whose head holds ``count`` header fields in all (the 5 of the upgrade included)."""
    return req(add=[(f"X-F{i}", "1") for i in range(count - 5)])


UPGRADE_426 = {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"}

CASES = [
    # -- the whole head: every line within its limit, 72 KB together (max_head_size is 64 KiB)
    Case("header-section-over-64KiB", 431, req(add=[(f"X-{i:03}", "h" * 8000) for i in range(9)])),
    # -- the request line
    Case("method-post", 405, req(method="POST"), {"Allow": "GET"}),
    Case("method-put", 405, req(method="PUT"), {"Allow": "GET"}),
    Case("method-connect", 405, req(method="CONNECT"), {"Allow": "GET"}),
    Case("method-lowercase-get", 405, req(method="get"), {"Allow": "GET"}),
    Case("method-not-a-token", 400, req(method="G(T")),
    Case("version-http-1.0", 505, req(version="HTTP/1.0")),
    Case("version-http-2.0", 505, req(version="HTTP/2.0")),
    Case("version-lowercase", 400, req(version="http/1.1")),
    Case("version-garbage", 400, req(version="HTTP/1.1.1")),
    Case("http2-preface", 505, raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
    Case("request-line-double-space", 400, raw("GET  /echo HTTP/1.1\r\nHost: a\r\n\r\n")),
    Case("request-line-tab", 400, raw("GET\t/echo HTTP/1.1\r\nHost: a\r\n\r\n")),
    Case("target-absolute-form", 400, req(target="https://127.0.0.1/echo")),
    Case("target-asterisk", 400, req(target="*")),
    Case("target-non-ascii", 400, req(target="/\xe9cho")),
    Case("request-line-too-long", 414, req(target="/echo?" + "a" * 9000)),
    Case("empty-line-before-request", 400, lambda port: b"\r\n" + http_request(port)),
    Case("bare-lf-line-endings", 400, lambda port: http_request(port).replace(b"\r\n", b"\n")),
    # -- header syntax
    Case("header-cr-injection", 400, req(add=[("X-A", "1\rSet-Cookie: a=b")])),
    Case("header-nul-in-value", 400, req(add=[("X-A", "1\x002")])),
    Case("header-obs-fold", 400, req(add=[("X-A", "1\r\n 2")])),
    Case("header-space-before-colon", 400, raw("GET /echo HTTP/1.1\r\nHost : a\r\n\r\n")),
    Case("header-without-colon", 400, req(add=[("X-A 1", "")])),
    Case("header-name-non-ascii", 400, req(add=[("X-\xe9", "1")])),
    Case("header-name-with-space", 400, req(add=[("Sec WebSocket-Key", "x")])),
    Case("header-line-too-long", 431, req(add=[("X-Big", "a" * 9000)])),
    Case("two-thousand-tiny-headers", 431, req(add=[("a", "") for _ in range(2000)])),
    Case("header-fields-129", 431, with_fields(129)),
    Case("subprotocol-32000-spaces", 431, req(add=[("Sec-WebSocket-Protocol", " " * 32000)])),
    # -- HTTP framing of the request
    Case("missing-host", 400, req(drop=["Host"])),
    Case("two-hosts", 400, req(add=[("Host", "evil.example")])),
    Case("invalid-host", 400, req(replace={"Host": "a b"})),
    Case("transfer-encoding-chunked", 400, req(add=[("Transfer-Encoding", "chunked")])),
    Case("content-length-body", 400, req(add=[("Content-Length", "5")])),
    Case("content-length-garbage", 400, req(add=[("Content-Length", "-1")])),
    # -- the upgrade fields (RFC 6455 §4.2.1)
    Case("missing-upgrade", 426, req(drop=["Upgrade"]), UPGRADE_426),
    Case("upgrade-h2c", 426, req(replace={"Upgrade": "h2c"}), UPGRADE_426),
    Case("missing-connection", 426, req(drop=["Connection"]), UPGRADE_426),
    Case("connection-keep-alive", 426, req(replace={"Connection": "keep-alive"}), UPGRADE_426),
    Case("connection-malformed", 400, req(replace={"Connection": "Upgrade; q=1"})),
    Case("missing-version", 426, req(drop=["Sec-WebSocket-Version"]), UPGRADE_426),
    Case("version-8", 426, req(replace={"Sec-WebSocket-Version": "8"}), UPGRADE_426),
    Case("version-list", 426, req(replace={"Sec-WebSocket-Version": "13, 8"}), UPGRADE_426),
    Case("version-twice", 426, req(add=[("Sec-WebSocket-Version", "13")]), UPGRADE_426),
    Case("missing-key", 400, req(drop=["Sec-WebSocket-Key"])),
    Case("key-15-bytes", 400, req(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"})),
    Case("key-17-bytes", 400, req(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="})),
    Case("key-not-base64", 400, req(replace={"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="})),
    Case("key-twice", 400, req(add=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])),
    Case("subprotocol-not-a-token", 400, req(add=[("Sec-WebSocket-Protocol", "app v1")])),
    Case("subprotocol-repeated", 400, req(add=[("Sec-WebSocket-Protocol", "app.v1, app.v1")])),
    Case("subprotocol-empty-list", 400, req(add=[("Sec-WebSocket-Protocol", ", ,")])),
    Case("extensions-malformed", 400, req(add=[("Sec-WebSocket-Extensions", "permessage-deflate; =")])),
    # -- routing
    Case("unknown-path", 404, req(target="/admin")),
    Case("path-traversal", 404, req(target="/../../etc/passwd")),
]


async def _expect_status(campaign: CampaignServer, case: Case) -> None:
    async with open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(case.build(campaign.port))
        response = await peer.read_response()
        assert response.status == case.status, response
        for name, value in case.headers.items():
            assert response.get(name) == value, (name, response)
        connection = [token.strip().lower() for token in (response.get("Connection") or "").split(",")]
        assert "close" in connection, response
        assert await peer.expect_eof() == b"", "bytes after the refusal"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_hostile_request(campaign: CampaignServer, case: Case) -> None:
    async with guarded(campaign, memory_kib=case.memory):
        await _expect_status(campaign, case)


@CONTROL
async def test_header_fields_128_is_the_limit(campaign: CampaignServer) -> None:
    """Boundary of header-fields-129: 128 fields still open the connection."""
    async with guarded(campaign, memory_kib=MEMORY), open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(with_fields(128)(campaign.port))
        assert (await peer.read_response()).status == 101


@CONTROL
async def test_largest_header_section_the_limits_allow(campaign: CampaignServer) -> None:
    """Boundary of header-section-over-64KiB: a head just under max_head_size (64 KiB) is accepted."""
    fields = [(f"X-{i:03}", "h" * 8100) for i in range(8)]
    request = http_request(campaign.port, add=fields)
    assert 63 * 1024 < len(request) < 64 * 1024
    async with guarded(campaign, memory_kib=MEMORY), open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(request)
        assert (await peer.read_response()).status == 101


async def test_pipelined_second_request_is_a_protocol_error(campaign: CampaignServer) -> None:
    """A second request right behind the upgrade is read as frames: "G" (0x47) sets RSV1 (1002)."""
    async with guarded(campaign, memory_kib=MEMORY), open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(http_request(campaign.port) + http_request(campaign.port))
        assert (await peer.read_response()).status == 101
        await peer.expect_close(1002)


async def test_frames_flooded_before_the_answer_are_dropped(campaign: CampaignServer) -> None:
    """More than 64 KiB of frames sent while the server's guard still decides: dropped unanswered.

    The core refuses to buffer early data beyond ``max_handshake_body``;
    ``/slow``'s guard takes half a second, so the data surely comes first
    and the server answers nothing at all.
    """
    early = client_frame(0x2, b"x" * 60000) * 2
    async with guarded(campaign, memory_kib=MEMORY), open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(http_request(campaign.port, "/slow") + early)
        assert await peer.expect_eof() == b""


async def test_slowloris_head_is_dropped_at_the_deadline(campaign: CampaignServer) -> None:
    """A head sent a byte every 50 ms (over 8 s in all) is dropped at open_timeout (2 s), unanswered."""
    deadline = campaign.info["open_timeout"]
    request = http_request(campaign.port, add=[("X-Pad", "p" * 60)])
    assert len(request) * 0.05 > 4 * deadline
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        async with open_peer(campaign.port, campaign.context()) as peer:
            started = time.monotonic()

            async def trickle() -> None:
                for byte in request:
                    peer.writer.write(bytes((byte,)))
                    await asyncio.sleep(0.05)  # the attack's pace, not a synchronisation

            sender = asyncio.create_task(trickle())
            try:
                assert await peer.expect_eof(timeout=deadline + 3) == b""
                elapsed = time.monotonic() - started
                assert not sender.done(), "the whole head went out before the server dropped it"
            finally:
                sender.cancel()
                with suppress(asyncio.CancelledError):
                    await sender
        assert deadline - 0.3 <= elapsed <= deadline + 1.5, elapsed
        await campaign.barrier()
        assert any("opening handshake timed out" in line for line in guard.log())


async def test_incomplete_head_then_silence_is_dropped_at_the_deadline(campaign: CampaignServer) -> None:
    """A whole head but its final blank line, then nothing: dropped at open_timeout."""
    deadline = campaign.info["open_timeout"]
    async with guarded(campaign, memory_kib=MEMORY) as guard:
        async with open_peer(campaign.port, campaign.context()) as peer:
            started = time.monotonic()
            await peer.send(http_request(campaign.port)[:-2])
            assert await peer.expect_eof(timeout=deadline + 3) == b""
            elapsed = time.monotonic() - started
        assert deadline - 0.3 <= elapsed <= deadline + 1.5, elapsed
        await campaign.barrier()
        assert any("opening handshake timed out" in line for line in guard.log())
