"""Bad-input campaign, TLS group: hostile bytes at the TLS layer.

Outcomes at this layer are asyncio's and OpenSSL's: a ClientHello the
server will not negotiate with, or bytes that are no TLS at all, end the
connection at once, well before the handshake deadline. (asyncio's TLS
protocol closes the socket without flushing the alert OpenSSL prepared, so
today the client sees the end of the connection and no record; a fatal
alert first would be as good, a ServerHello or a wait would not.) Bytes
that could still become a valid handshake make the server wait, until
``open_timeout`` (2 s, which also bounds the TLS handshake) drops the
connection, with no record sent.

The crafted ClientHellos are built by hand (``campaign.client_hello``):
OpenSSL refuses to build old or broken ones. A control case sends the same
builder's TLS 1.2 hello and gets a ServerHello, so the refusals come from
what each case changes, not from a malformed builder.

Around every case :func:`~tests.security.campaign.guarded` checks that a
neighbour still echoes, the memory bound, and that the server logged no
ERROR and no traceback (plain HTTP or ws:// sent to the TLS port must be
dropped quietly).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import pytest

from tests.security import campaign as c
from tests.security.campaign import (
    MIB,
    CampaignServer,
    guarded,
    http_request,
    open_bio_tls,
    read_tls_outcome,
)

#: A valid input kept beside the hostile ones (a boundary or a control); see conftest.py.
CONTROL = pytest.mark.campaign_control

MEMORY = 2 * MIB

# Refused "at once": well before the 2 s handshake deadline.
AT_ONCE = 1.0

ALERT = 0x15  # the TLS record type of an alert

CBC_SUITES = (c.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, c.TLS_RSA_WITH_AES_128_CBC_SHA)


def seeded_noise(seed: int, size: int = 512) -> bytes:
    """Random bytes, the same on every run (the outcome must be reproducible)."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[int], bytes]  # gets the port


def hello(**kwargs: object) -> Callable[[int], bytes]:
    kwargs.setdefault("extensions", c.modern_extensions())
    return lambda port: c.client_hello(**kwargs)  # type: ignore[arg-type]


REFUSED_AT_ONCE = [
    # -- protocol versions below TLS 1.2 (RFC 8996)
    Case("tls-1.0-client-hello", hello(version=0x0301, suites=CBC_SUITES)),
    Case("tls-1.1-client-hello", hello(version=0x0302, record_version=0x0302, suites=CBC_SUITES)),
    Case(
        "ssl-3.0-client-hello",
        hello(version=0x0300, record_version=0x0300, suites=CBC_SUITES, extensions=None),
    ),
    Case("sslv2-client-hello", lambda port: c.sslv2_client_hello(0x0002, [0x010080, 0x0700C0])),
    Case("sslv2-format-hello-for-tls-1.2", lambda port: c.sslv2_client_hello(0x0303, [0xC02B, 0x002F])),
    Case("unknown-future-version-only", hello(version=0x7F7F, record_version=0x7F7F)),
    # -- cipher suites outside Mozilla's intermediate profile
    Case("rc4-and-3des-only", hello(suites=(c.TLS_RSA_WITH_RC4_128_SHA, c.TLS_RSA_WITH_3DES_EDE_CBC_SHA))),
    Case(
        "cbc-only",
        hello(suites=(c.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, c.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384)),
    ),
    Case("rsa-key-exchange-only", hello(suites=(c.TLS_RSA_WITH_AES_128_GCM_SHA256,))),
    Case("null-ciphers-only", hello(suites=(c.TLS_RSA_WITH_NULL_SHA256, c.TLS_ECDHE_ECDSA_WITH_NULL_SHA))),
    Case("no-cipher-suites", hello(suites=())),
    Case("tls-1.2-hello-without-extensions", hello(extensions=None)),
    Case(
        "only-unsupported-group",
        hello(
            extensions=[
                c.tls_extension(10, c.tls_vector(struct.pack("!H", 0x0001), 2)),  # sect163k1
                c.tls_extension(13, c.tls_vector(struct.pack("!H", 0x0403), 2)),
            ]
        ),
    ),
    # -- malformed handshakes and records
    Case("compression-deflate-without-null", hello(compression=b"\x01")),
    Case("extension-length-overruns-hello", hello(extensions=[b"\x00\x0a\xff\xff"])),
    Case("record-over-2-to-the-14", lambda port: c.tls_record(0x16, seeded_noise(1, 18000))),
    Case("change-cipher-spec-first", lambda port: c.tls_record(0x14, b"\x01")),
    Case("alert-first", lambda port: c.tls_record(0x15, b"\x02\x28")),
    Case("application-data-first", lambda port: c.tls_record(0x17, seeded_noise(2, 64), version=0x0303)),
    Case("heartbeat-request-first", lambda port: c.tls_record(0x18, b"\x01\x40\x00" + seeded_noise(3, 16))),
    Case("unknown-record-type", lambda port: c.tls_record(0x63, b"xxxx")),
    # -- no TLS at all
    *[Case(f"random-bytes-{seed}", lambda port, seed=seed: seeded_noise(seed)) for seed in (10, 11, 12)],
    Case("plain-http-get", lambda port: http_request(port, "/", upgrade=False)),
    Case("plain-ws-upgrade", lambda port: http_request(port)),
]

DROPPED_AT_DEADLINE = [
    Case("tcp-connect-then-silence", lambda port: b""),
    Case(
        "truncated-client-hello-then-silence",
        lambda port: c.client_hello(extensions=c.modern_extensions())[:40],
    ),
    Case("record-header-only-then-silence", lambda port: c.tls_record(0x16, b"", length=200)),
    Case(
        "hello-longer-than-its-record-then-silence",
        lambda port: c.tls_record(0x16, b"\x01\x00\xff\xff\x03\x03"),
    ),
]


@pytest.mark.parametrize("case", REFUSED_AT_ONCE, ids=[case.id for case in REFUSED_AT_ONCE])
async def test_refused_at_once(campaign: CampaignServer, case: Case) -> None:
    async with guarded(campaign, memory_kib=MEMORY):
        reader, writer = await asyncio.open_connection("127.0.0.1", campaign.port)
        try:
            writer.write(case.build(campaign.port))
            outcome = await read_tls_outcome(reader)
        finally:
            writer.transport.abort()
        # The end of the connection, or a fatal alert before it: never a ServerHello, never a wait.
        assert outcome.record_type in (None, ALERT), outcome
        assert outcome.elapsed < AT_ONCE, outcome


@pytest.mark.parametrize("case", DROPPED_AT_DEADLINE, ids=[case.id for case in DROPPED_AT_DEADLINE])
async def test_dropped_at_the_deadline(campaign: CampaignServer, case: Case) -> None:
    deadline = campaign.info["open_timeout"]
    async with guarded(campaign, memory_kib=MEMORY):
        reader, writer = await asyncio.open_connection("127.0.0.1", campaign.port)
        try:
            writer.write(case.build(campaign.port))
            outcome = await read_tls_outcome(reader, timeout=deadline + 3)
        finally:
            writer.transport.abort()
        assert outcome.record_type is None, outcome
        assert deadline - 0.3 <= outcome.elapsed <= deadline + 1.5, outcome


@CONTROL
async def test_control_crafted_tls_1_2_hello_gets_a_server_hello(campaign: CampaignServer) -> None:
    """The builder's TLS 1.2 ECDHE-ECDSA hello is valid: the server answers with a ServerHello."""
    reader, writer = await asyncio.open_connection("127.0.0.1", campaign.port)
    try:
        writer.write(c.client_hello(extensions=c.modern_extensions()))
        outcome = await read_tls_outcome(reader)
    finally:
        writer.transport.abort()
    assert (outcome.record_type, outcome.handshake_type) == (0x16, 2)


# -- after a completed TLS handshake ------------------------------------------------------


async def _assert_dropped(tls: c.BioTls, *, within: float) -> float:
    """Read until the server ends the connection; assert it sent no application data. Returns the time."""
    started = time.monotonic()
    data = await c.read_until_closed(tls.reader, timeout=within + 3)
    elapsed = time.monotonic() - started
    tls.incoming.write(data)
    plaintext = b""
    try:
        while chunk := tls.tls.read(65536):
            plaintext += chunk
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLError):
        pass
    assert plaintext == b"", plaintext
    assert elapsed <= within, elapsed
    return elapsed


async def test_garbage_record_after_handshake(campaign: CampaignServer) -> None:
    async with guarded(campaign, memory_kib=MEMORY), open_bio_tls(campaign.port, campaign.context()) as tls:
        await tls.handshake()
        await tls.send_raw(c.tls_record(0x17, seeded_noise(20, 100), version=0x0303))
        await _assert_dropped(tls, within=AT_ONCE)


async def test_tampered_record_after_handshake(campaign: CampaignServer) -> None:
    """A real record of the upgrade request with one bit flipped: its authentication tag fails."""
    async with guarded(campaign, memory_kib=MEMORY), open_bio_tls(campaign.port, campaign.context()) as tls:
        await tls.handshake()
        tls.tls.write(http_request(campaign.port))
        record = bytearray(tls.pending_output())
        record[20] ^= 0x01
        await tls.send_raw(bytes(record))
        await _assert_dropped(tls, within=AT_ONCE)


async def test_garbage_record_after_upgrade(campaign: CampaignServer) -> None:
    """An open WebSocket connection whose TLS stream turns to garbage is dropped quietly."""
    async with guarded(campaign, memory_kib=MEMORY), open_bio_tls(campaign.port, campaign.context()) as tls:
        await tls.handshake()
        await tls.send(http_request(campaign.port))
        assert (await tls.read_head()).startswith(b"HTTP/1.1 101 ")
        await tls.send_raw(c.tls_record(0x17, seeded_noise(21, 100), version=0x0303))
        await _assert_dropped(tls, within=AT_ONCE)
        assert (await campaign.stats())["main"] == 1  # the neighbour only


async def test_close_notify_before_the_request(campaign: CampaignServer) -> None:
    async with guarded(campaign, memory_kib=MEMORY), open_bio_tls(campaign.port, campaign.context()) as tls:
        await tls.handshake()
        # Our close_notify goes out; the server's is what unwrap() would wait for.
        with suppress(ssl.SSLWantReadError):
            tls.tls.unwrap()
        await tls.flush()
        await _assert_dropped(tls, within=AT_ONCE)


async def test_handshake_then_silence_is_dropped_at_the_deadline(campaign: CampaignServer) -> None:
    """open_timeout runs from the TCP accept: TLS done, no request, dropped at 2 s."""
    deadline = campaign.info["open_timeout"]
    async with guarded(campaign, memory_kib=MEMORY), open_bio_tls(campaign.port, campaign.context()) as tls:
        started = time.monotonic()
        await tls.handshake()
        await _assert_dropped(tls, within=deadline + 1.5)
        assert time.monotonic() - started >= deadline - 0.3
