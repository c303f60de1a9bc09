"""Bad-input campaign, resources group: floods, slow and stuck peers, rate limits.

The main listener has generous limits; the ``limited`` listener has tight
ones (see ``campaign_server.LIMITED``): 4 connections per address in a burst
then one every 2 s (429), 3 at once per address, 12 in all and 5 handshakes
in progress (503, ``Retry-After: 7``), 5 messages in a burst then 1 a
second, 64 KiB a second beyond a 1 MiB burst (1008), 5 Pings answered in a
burst then 1 a second. Its cases each connect from loopback addresses of
their own, so their buckets are their own. Around every case
:func:`~tests.security.campaign.guarded` checks the neighbour (on the
listener under attack), the memory bound and the log.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack, suppress

import pytest

from tests.security.campaign import (
    MIB,
    CampaignServer,
    HttpResponse,
    Peer,
    client_frame,
    close_payload,
    frame,
    fresh_address,
    guarded,
    http_request,
    open_peer,
    open_ws,
    read_tls_outcome,
)

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


async def _write_in_background(peer: Peer, data: bytes) -> asyncio.Task[None]:
    async def write() -> None:
        with suppress(ConnectionError):
            peer.writer.write(data)
            await peer.writer.drain()

    return asyncio.create_task(write())


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError, ConnectionError):
        await task


# -- fragments ----------------------------------------------------------------------------


async def test_100000_empty_continuation_frames(campaign: CampaignServer) -> None:
    """A message of 100 001 frames is cut at the 4097th (max_fragments = 4096): 1009."""
    flood = client_frame(TEXT, b"a", fin=False) + client_frame(CONT, b"", fin=False) * 100_000
    async with guarded(campaign, memory_kib=4 * MIB), open_ws(campaign) as peer:
        writer = await _write_in_background(peer, flood)
        try:
            await peer.expect_close(1009)
        finally:
            await _cancel(writer)


async def test_4097_fragments(campaign: CampaignServer) -> None:
    message = client_frame(BINARY, b"x", fin=False) + client_frame(CONT, b"x", fin=False) * 4095
    async with guarded(campaign, memory_kib=2 * MIB), open_ws(campaign) as peer:
        await peer.send(message + client_frame(CONT, b"x"))
        await peer.expect_close(1009)


@CONTROL
async def test_4096_fragments_of_256_bytes_is_one_legal_message(campaign: CampaignServer) -> None:
    """Boundary of the fragment limit: 1 MiB in exactly 4096 fragments is echoed whole."""
    data = os.urandom(MIB * 1024)
    parts = [data[i : i + 256] for i in range(0, len(data), 256)]
    assert len(parts) == 4096
    frames = [client_frame(BINARY if i == 0 else CONT, part, fin=i == 4095) for i, part in enumerate(parts)]
    async with guarded(campaign, memory_kib=12 * MIB), open_ws(campaign) as peer:
        await peer.send(b"".join(frames))
        echoed = await peer.read_frame()
        assert (echoed.opcode, echoed.payload) == (BINARY, data)


# -- floods of frames and messages ----------------------------------------------------------


async def test_ping_flood_is_answered_in_order(campaign: CampaignServer) -> None:
    """10 000 Pings at once (no ping limiter on the main listener): 10 000 Pongs, then echo as usual."""
    payloads = [i.to_bytes(4, "big") for i in range(10_000)]
    async with guarded(campaign, memory_kib=4 * MIB), open_ws(campaign) as peer:
        writer = await _write_in_background(peer, b"".join(client_frame(PING, p) for p in payloads))
        try:
            pongs = [await peer.read_frame() for _ in payloads]
        finally:
            await _cancel(writer)
        assert [(pong.opcode, pong.payload) for pong in pongs] == [(PONG, p) for p in payloads]
        await peer.send(client_frame(TEXT, b"after the flood"))
        assert (await peer.read_frame()).payload == b"after the flood"


async def test_1000_pipelined_messages_are_echoed_in_order(campaign: CampaignServer) -> None:
    messages = [f"message {i}".encode() for i in range(1000)]
    async with guarded(campaign, memory_kib=4 * MIB), open_ws(campaign) as peer:
        writer = await _write_in_background(peer, b"".join(client_frame(TEXT, m) for m in messages))
        try:
            echoes = [(await peer.read_frame()).payload for _ in messages]
        finally:
            await _cancel(writer)
        assert echoes == messages


# -- peers that stop reading ------------------------------------------------------------------


async def _assert_cut_off(campaign: CampaignServer, peer: Peer, mark: int, started: float) -> None:
    """The server dropped the peer at write_timeout after its buffer filled, and says so in its log."""
    deadline = campaign.info["write_timeout"]
    line = await campaign.log.wait_for_async(
        r"peer read nothing for [0-9.]+ s; dropping the connection", since=mark, timeout=deadline + 4
    )
    assert f"for {deadline} s" in line
    elapsed = time.monotonic() - started
    assert deadline - 0.3 <= elapsed <= deadline + 3, elapsed
    await peer.expect_eof()  # whatever was in flight, then the end
    assert (await campaign.stats())["main"] == 1  # the neighbour only


async def test_reader_that_never_reads_is_cut_off(campaign: CampaignServer) -> None:
    """192 messages of 64 KiB to /echo, and not one echo read: dropped at write_timeout (2 s).

    The kernel's socket buffers take a few MiB of echoes first (loopback
    autotuning goes up to 4 MiB); then the server's write buffer fills, and
    it holds at most max_queue (16) messages meanwhile: about 1 MiB, far
    below the 12 MiB sent.
    """
    flood = os.urandom(65536)
    flood = b"".join(client_frame(BINARY, flood) for _ in range(192))
    async with guarded(campaign, memory_kib=4 * MIB) as guard, open_ws(campaign, rcvbuf=4096) as peer:
        started = time.monotonic()
        peer.writer.write(flood)  # never drained: the server stops reading, which is the point
        await _assert_cut_off(campaign, peer, guard.mark, started)


async def test_ping_flood_without_reading_pongs_is_cut_off(campaign: CampaignServer) -> None:
    """100 000 Pings of 125 bytes, no Pong read: the server stops reading, then drops the peer."""
    flood = client_frame(PING, b"p" * 125) * 100_000
    async with guarded(campaign, memory_kib=4 * MIB) as guard, open_ws(campaign, rcvbuf=4096) as peer:
        started = time.monotonic()
        peer.writer.write(flood)
        await _assert_cut_off(campaign, peer, guard.mark, started)


# -- floods of connections ---------------------------------------------------------------------


async def test_200_idle_connections_cost_bounded_memory(campaign: CampaignServer) -> None:
    """200 open, idle WebSocket connections: at most 320 KiB of server memory each.

    Most of it is asyncio's TLS transport: SSLProtocol allocates a 256 KiB
    read buffer per connection. (Known and reported; the bound pins the
    cost so that it cannot grow unnoticed.)
    """
    count = 200
    async with guarded(campaign, memory_kib=count * 320):
        async with AsyncExitStack() as stack:
            peers: list[Peer] = []
            for _ in range(count // 20):
                peers += await asyncio.gather(
                    *(stack.enter_async_context(open_ws(campaign)) for _ in range(20))
                )
            assert (await campaign.stats())["main"] == count + 1
            await asyncio.gather(*(_close(peer) for peer in peers))
        assert (await campaign.stats())["main"] == 1


async def _close(peer: Peer) -> None:
    await peer.send(client_frame(CLOSE, close_payload(1000)))
    await peer.expect_close(1000)


async def test_100_silent_tcp_connections_are_dropped_at_the_deadline(campaign: CampaignServer) -> None:
    deadline = campaign.info["open_timeout"]
    async with guarded(campaign, memory_kib=4 * MIB):
        streams = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", campaign.port) for _ in range(100))
        )
        try:
            outcomes = await asyncio.gather(*(read_tls_outcome(r, timeout=deadline + 3) for r, _ in streams))
        finally:
            for _, writer in streams:
                writer.transport.abort()
        assert {outcome.record_type for outcome in outcomes} == {None}
        assert all(deadline - 0.3 <= outcome.elapsed <= deadline + 2 for outcome in outcomes), outcomes


async def test_30_tls_connections_without_a_request_are_dropped_at_the_deadline(
    campaign: CampaignServer,
) -> None:
    deadline = campaign.info["open_timeout"]
    async with guarded(campaign, memory_kib=4 * MIB), AsyncExitStack() as stack:
        started = time.monotonic()
        peers = await asyncio.gather(
            *(stack.enter_async_context(open_peer(campaign.port, campaign.context())) for _ in range(30))
        )
        leftovers = await asyncio.gather(*(peer.expect_eof(timeout=deadline + 3) for peer in peers))
        assert leftovers == [b""] * 30
        assert deadline - 0.3 <= time.monotonic() - started <= deadline + 2


async def test_reset_in_the_middle_of_a_frame(campaign: CampaignServer) -> None:
    async with guarded(campaign, memory_kib=2 * MIB), open_ws(campaign) as peer:
        await peer.send(frame(BINARY, os.urandom(1000))[:500])
        peer.abort()
        assert (await campaign.stats())["main"] == 1


async def test_reset_in_the_middle_of_the_request(campaign: CampaignServer) -> None:
    async with guarded(campaign, memory_kib=2 * MIB), open_peer(campaign.port, campaign.context()) as peer:
        await peer.send(http_request(campaign.port)[:30])
        peer.abort()
        assert (await campaign.stats())["main"] == 1


# -- rate limits (the "limited" listener) ----------------------------------------------------------


async def _attempt(campaign: CampaignServer, stack: AsyncExitStack, source: str) -> HttpResponse:
    """One upgrade to the limited listener from ``source``; an accepted connection stays open in ``stack``."""
    port = campaign.ports["limited"]
    peer = await stack.enter_async_context(open_peer(port, campaign.context(), source=source))
    await peer.send(http_request(port))
    response = await peer.read_response()
    if response.status != 101:
        assert await peer.expect_eof() == b""
    return response


def _refusal(response: HttpResponse) -> tuple[int, str | None, bytes]:
    return response.status, response.get("Retry-After"), response.body


async def test_connection_flood_from_one_address_gets_503_then_429(campaign: CampaignServer) -> None:
    """3 connections at once per address (503 for the 4th), 4 in a burst (429 for the 5th).

    Another address is unaffected.
    """
    limited = campaign.info["limited"]
    assert (limited["max_per_ip"], limited["per_ip_burst"], limited["per_ip_rate"]) == (3, 4, 0.5)
    source = fresh_address()
    async with (
        guarded(campaign, memory_kib=2 * MIB, neighbour_port=campaign.ports["limited"]),
        AsyncExitStack() as stack,
    ):
        started = time.monotonic()
        statuses = [(await _attempt(campaign, stack, source)).status for _ in range(3)]
        assert statuses == [101, 101, 101]
        busy = await _attempt(campaign, stack, source)
        limited_response = await _attempt(campaign, stack, source)
        elapsed = time.monotonic() - started
        assert _refusal(busy) == (503, "7", b"too many connections from this address\n")
        # One token missing at 0.5 a second, less what came back meanwhile, rounded up.
        expected_wait = "2" if elapsed < 1.0 else "1"
        assert _refusal(limited_response) == (429, expected_wait, b"connection rate exceeded\n")
        assert (await _attempt(campaign, stack, fresh_address())).status == 101


async def test_connection_rate_from_one_address_gets_429(campaign: CampaignServer) -> None:
    """Connections opened and closed one after another: the 5th within the burst's time is refused."""
    source = fresh_address()
    port = campaign.ports["limited"]
    async with guarded(campaign, memory_kib=2 * MIB, neighbour_port=port):
        started = time.monotonic()
        for _ in range(4):
            async with open_ws(campaign, port=port, source=source) as peer:
                await peer.send(client_frame(CLOSE, close_payload(1000)))
                await peer.expect_close(1000)
        async with AsyncExitStack() as stack:
            refused = await _attempt(campaign, stack, source)
        expected_wait = "2" if time.monotonic() - started < 1.0 else "1"
        assert _refusal(refused) == (429, expected_wait, b"connection rate exceeded\n")


async def test_handshakes_in_progress_cap_gets_503(campaign: CampaignServer) -> None:
    """5 TLS connections that send no request hold every handshake slot: the next one gets 503."""
    port = campaign.ports["limited"]
    assert campaign.info["limited"]["max_pending_handshakes"] == 5
    async with guarded(campaign, memory_kib=2 * MIB, neighbour_port=port), AsyncExitStack() as stack:
        stalled = [
            await stack.enter_async_context(open_peer(port, campaign.context(), source=fresh_address()))
            for _ in range(5)
        ]
        refused = await _attempt(campaign, stack, fresh_address())
        assert _refusal(refused) == (503, "7", b"too many handshakes in progress\n")
        mark = campaign.log.mark()
        for peer in stalled:
            peer.abort()
        # Each is logged once its slot is given back (connection_lost releases, then logs).
        await campaign.log.wait_for_async(r"connection closed before a request arrived", since=mark, count=5)
        assert (await _attempt(campaign, stack, fresh_address())).status == 101


async def test_total_connections_cap_gets_503(campaign: CampaignServer) -> None:
    """12 connections in all (the neighbour and 11 more, from 4 addresses): the 13th gets 503."""
    port = campaign.ports["limited"]
    assert campaign.info["limited"]["max_total"] == 12
    async with guarded(campaign, memory_kib=4 * MIB, neighbour_port=port), AsyncExitStack() as stack:
        sources = [fresh_address() for _ in range(4)]
        statuses = [(await _attempt(campaign, stack, sources[i // 3])).status for i in range(11)]
        assert statuses == [101] * 11
        refused = await _attempt(campaign, stack, fresh_address())
        assert _refusal(refused) == (503, "7", b"server at its connection limit\n")


async def test_message_rate_closes_with_1008(campaign: CampaignServer) -> None:
    """8 messages at once, 5 allowed in a burst: Close 1008 "message rate exceeded"."""
    port = campaign.ports["limited"]
    messages = [f"m{i}".encode() for i in range(8)]
    async with (
        guarded(campaign, memory_kib=2 * MIB, neighbour_port=port),
        open_ws(campaign, port=port, source=fresh_address()) as peer,
    ):
        await peer.send(b"".join(client_frame(TEXT, m) for m in messages))
        await peer.expect_close(1008, reason=b"message rate exceeded", before=5)
        echoes = [received.payload for received in peer.frames_before_close]
        assert echoes == messages[: len(echoes)]


async def test_byte_rate_closes_with_1008(campaign: CampaignServer) -> None:
    """Two messages of 600 000 bytes: the second overdraws the 1 MiB burst at 64 KiB a second."""
    port = campaign.ports["limited"]
    first, second = os.urandom(600_000), os.urandom(600_000)
    async with (
        guarded(campaign, memory_kib=6 * MIB, neighbour_port=port),
        open_ws(campaign, port=port, source=fresh_address()) as peer,
    ):
        writer = await _write_in_background(peer, client_frame(BINARY, first) + client_frame(BINARY, second))
        try:
            await peer.expect_close(1008, reason=b"byte rate exceeded", before=1)
        finally:
            await _cancel(writer)
        assert [received.payload for received in peer.frames_before_close] in ([], [first])


async def test_ping_flood_gets_no_pongs_over_the_rate(campaign: CampaignServer) -> None:
    """50 Pings at once, 5 answered in a burst: exactly 5 Pongs, and the connection stays up."""
    port = campaign.ports["limited"]
    assert campaign.info["limited"]["ping_burst"] == 5
    async with (
        guarded(campaign, memory_kib=2 * MIB, neighbour_port=port),
        open_ws(campaign, port=port, source=fresh_address()) as peer,
    ):
        pings = b"".join(client_frame(PING, i.to_bytes(2, "big")) for i in range(50))
        await peer.send(pings + client_frame(TEXT, b"after the pings"))
        received = []
        while (answer := await peer.read_frame()).opcode == PONG:
            received.append(answer.payload)
        assert (answer.opcode, answer.payload) == (TEXT, b"after the pings")
        assert received == [i.to_bytes(2, "big") for i in range(5)]
        await peer.send(client_frame(TEXT, b"still open"))
        assert (await peer.read_frame()).payload == b"still open"
