"""Tests for wsskit.protocol.deflate: permessage-deflate (RFC 7692)."""

from __future__ import annotations

import itertools
import random
import tracemalloc
import zlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsskit.exceptions import NegotiationError, PayloadTooBig, RemoteProtocolError
from wsskit.protocol.deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    PerMessageDeflate,
    accept_offer,
    accept_response,
    client_offer,
)
from wsskit.protocol.headers import parse_extensions

TAIL = b"\x00\x00\xff\xff"
MiB = 1 << 20


# -- helpers ---------------------------------------------------------------


def make_engine(
    *,
    local_nct: bool = False,
    remote_nct: bool = False,
    local_bits: int = 15,
    remote_bits: int = 15,
    is_client: bool = True,
    **kwargs: int,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        is_client=is_client,
        local_no_context_takeover=local_nct,
        remote_no_context_takeover=remote_nct,
        local_max_window_bits=local_bits,
        remote_max_window_bits=remote_bits,
        **kwargs,
    )


def link(*, nct: bool = False, bits: int = 15) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A sender and a receiver that agree on one direction's settings."""
    sender = make_engine(local_nct=nct, local_bits=bits)
    receiver = make_engine(remote_nct=nct, remote_bits=bits, is_client=False)
    return sender, receiver


def raw_deflate(data: bytes, wbits: int = 15, level: int = 6) -> bytes:
    """Raw DEFLATE of one message the RFC 7692 way, with plain zlib."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def raw_inflate(payload: bytes, wbits: int = 15) -> bytes:
    d = zlib.decompressobj(-wbits)
    return d.decompress(payload + TAIL)


def offers(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return parse_extensions([header])


def response_params(header: str) -> list[tuple[str, str | None]]:
    [(name, params)] = parse_extensions([header])
    assert name == EXTENSION_NAME
    return params


def settings_of(engine: PerMessageDeflate) -> tuple[bool, bool, int, int]:
    return (
        engine.local_no_context_takeover,
        engine.remote_no_context_takeover,
        engine.local_max_window_bits,
        engine.remote_max_window_bits,
    )


def patterned(size: int, seed: int = 0, *, spread: int = 64) -> bytes:
    """Compressible data with matches at many distances (not only short ones)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(3, 40)) for _ in range(spread)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
    return bytes(out[:size])


# -- options ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"client_max_window_bits": True},
        {"compress_level": 10},
        {"compress_level": -2},
        {"memory_level": 0},
        {"memory_level": 10},
        {"min_size": -1},
    ],
)
def test_options_reject_out_of_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DeflateOptions(**kwargs)


def test_options_accept_the_whole_range() -> None:
    for bits in range(8, 16):
        opts = DeflateOptions(server_max_window_bits=bits, client_max_window_bits=bits)
        assert opts.server_max_window_bits == opts.client_max_window_bits == bits
    assert DeflateOptions(compress_level=-1, memory_level=9, min_size=0).compress_level == -1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_bits": 7},
        {"remote_bits": 16},
        {"compress_level": 11},
        {"memory_level": 0},
        {"min_size": -5},
    ],
)
def test_engine_rejects_out_of_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_engine(**kwargs)


def test_engine_name_and_repr() -> None:
    engine = make_engine(local_nct=True, remote_bits=10)
    assert engine.name == PerMessageDeflate.name == "permessage-deflate"
    text = repr(engine)
    assert "local_no_context_takeover=True" in text
    assert "remote_max_window_bits=10" in text


def test_should_compress_honours_min_size() -> None:
    engine = make_engine(min_size=10)
    assert not engine.should_compress(0)
    assert not engine.should_compress(9)
    assert engine.should_compress(10)
    assert make_engine().should_compress(0)


# -- client offer ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (DeflateOptions(), "permessage-deflate; client_max_window_bits"),
        (DeflateOptions(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=10"),
        (
            DeflateOptions(server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
        ),
        (
            DeflateOptions(client_no_context_takeover=True),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
        ),
        (
            DeflateOptions(server_max_window_bits=9),
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits",
        ),
        (
            DeflateOptions(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=8,
                client_max_window_bits=8,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=8",
        ),
    ],
)
def test_client_offer(options: DeflateOptions, expected: str) -> None:
    assert client_offer(options) == expected
    # What we send must parse back as one valid offer.
    [(name, _)] = parse_extensions([expected])
    assert name == EXTENSION_NAME


# -- server: accepting offers ----------------------------------------------

P = "permessage-deflate"


@pytest.mark.parametrize(
    ("offer", "options", "response", "engine"),
    [
        # (local_nct, remote_nct, local_bits, remote_bits) of the server engine
        (P, DeflateOptions(), P, (False, False, 15, 15)),
        (f"{P}; client_max_window_bits", DeflateOptions(), P, (False, False, 15, 15)),
        (
            f"{P}; client_max_window_bits",
            DeflateOptions(client_max_window_bits=10),
            f"{P}; client_max_window_bits=10",
            (False, False, 15, 10),
        ),
        # The client did not offer client_max_window_bits: the cap can't be sent.
        (P, DeflateOptions(client_max_window_bits=10), P, (False, False, 15, 15)),
        (
            f"{P}; client_max_window_bits=12",
            DeflateOptions(),
            f"{P}; client_max_window_bits=12",
            (False, False, 15, 12),
        ),
        (
            f"{P}; client_max_window_bits=12",
            DeflateOptions(client_max_window_bits=10),
            f"{P}; client_max_window_bits=10",
            (False, False, 15, 10),
        ),
        (
            f"{P}; client_max_window_bits=9",
            DeflateOptions(client_max_window_bits=10),
            f"{P}; client_max_window_bits=9",
            (False, False, 15, 9),
        ),
        (
            f"{P}; server_max_window_bits=10",
            DeflateOptions(),
            f"{P}; server_max_window_bits=10",
            (False, False, 10, 15),
        ),
        (
            f"{P}; server_max_window_bits=12",
            DeflateOptions(server_max_window_bits=9),
            f"{P}; server_max_window_bits=9",
            (False, False, 9, 15),
        ),
        (
            f"{P}; server_max_window_bits=9",
            DeflateOptions(server_max_window_bits=12),
            f"{P}; server_max_window_bits=9",
            (False, False, 9, 15),
        ),
        # RFC 7692 §7.1.2.1: the server may limit its window unasked.
        (
            P,
            DeflateOptions(server_max_window_bits=11),
            f"{P}; server_max_window_bits=11",
            (False, False, 11, 15),
        ),
        (
            f"{P}; server_no_context_takeover",
            DeflateOptions(),
            f"{P}; server_no_context_takeover",
            (True, False, 15, 15),
        ),
        (
            P,
            DeflateOptions(server_no_context_takeover=True),
            f"{P}; server_no_context_takeover",
            (True, False, 15, 15),
        ),
        (
            f"{P}; client_no_context_takeover",
            DeflateOptions(),
            f"{P}; client_no_context_takeover",
            (False, True, 15, 15),
        ),
        (
            P,
            DeflateOptions(client_no_context_takeover=True),
            f"{P}; client_no_context_takeover",
            (False, True, 15, 15),
        ),
        (
            f"{P}; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=8",
            DeflateOptions(),
            f"{P}; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; client_max_window_bits=8",
            (True, True, 8, 8),
        ),
        # Any order in; canonical order out.
        (
            f"{P}; client_max_window_bits=10; server_max_window_bits=11; server_no_context_takeover",
            DeflateOptions(client_no_context_takeover=True),
            f"{P}; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=11; client_max_window_bits=10",
            (True, True, 11, 10),
        ),
        # RFC 6455 §9.1: a quoted value is the same token.
        (
            f'{P}; server_max_window_bits="10"',
            DeflateOptions(),
            f"{P}; server_max_window_bits=10",
            (False, False, 10, 15),
        ),
    ],
)
def test_accept_offer(
    offer: str, options: DeflateOptions, response: str, engine: tuple[bool, bool, int, int]
) -> None:
    result = accept_offer(offers(offer), options)
    assert result is not None
    header, pmd = result
    assert header == response
    assert settings_of(pmd) == engine
    assert pmd.is_client is False


def test_accept_offer_passes_tuning_to_the_engine() -> None:
    options = DeflateOptions(compress_level=1, memory_level=3, min_size=100)
    result = accept_offer(offers(P), options)
    assert result is not None
    _, pmd = result
    assert (pmd.compress_level, pmd.memory_level, pmd.min_size) == (1, 3, 100)


INVALID_OFFERS = [
    f"{P}; foo",
    f"{P}; foo=1",
    f"{P}; server_max_window_bits",
    f"{P}; server_max_window_bits=7",
    f"{P}; server_max_window_bits=16",
    f"{P}; server_max_window_bits=08",
    f"{P}; server_max_window_bits=0",
    f"{P}; server_max_window_bits=abc",
    f"{P}; client_max_window_bits=7",
    f"{P}; client_max_window_bits=16",
    f"{P}; client_max_window_bits=010",
    f"{P}; server_no_context_takeover=1",
    f"{P}; client_no_context_takeover=true",
    f"{P}; server_no_context_takeover; server_no_context_takeover",
    f"{P}; client_no_context_takeover; client_no_context_takeover",
    f"{P}; server_max_window_bits=10; server_max_window_bits=10",
    f"{P}; client_max_window_bits; client_max_window_bits=10",
]


@pytest.mark.parametrize("offer", INVALID_OFFERS)
def test_accept_offer_declines_invalid_offer(offer: str) -> None:
    assert accept_offer(offers(offer), DeflateOptions()) is None


@pytest.mark.parametrize("bad", INVALID_OFFERS)
def test_accept_offer_falls_back_to_next_offer(bad: str) -> None:
    # RFC 7692 §5.1: decline the invalid offer, try the next one.
    result = accept_offer(offers(f"{bad}, {P}; client_no_context_takeover"), DeflateOptions())
    assert result is not None
    header, pmd = result
    assert header == f"{P}; client_no_context_takeover"
    assert pmd.remote_no_context_takeover


def test_accept_offer_takes_the_first_valid_offer() -> None:
    result = accept_offer(
        offers(f"{P}; server_max_window_bits=10, {P}; server_no_context_takeover, {P}"),
        DeflateOptions(),
    )
    assert result is not None
    assert result[0] == f"{P}; server_max_window_bits=10"


def test_accept_offer_skips_other_extensions() -> None:
    result = accept_offer(offers(f"x-webkit-deflate-frame, {P}"), DeflateOptions())
    assert result is not None
    assert result[0] == P


def test_accept_offer_with_nothing_acceptable() -> None:
    assert accept_offer([], DeflateOptions()) is None
    assert accept_offer(offers("x-foo; bar"), DeflateOptions()) is None
    assert accept_offer(offers(f"{P}; a, {P}; b"), DeflateOptions()) is None


# -- client: accepting the response ----------------------------------------


@pytest.mark.parametrize(
    ("options", "response", "engine"),
    [
        # (local_nct, remote_nct, local_bits, remote_bits) of the client engine
        (DeflateOptions(), P, (False, False, 15, 15)),
        (DeflateOptions(), f"{P}; server_no_context_takeover", (False, True, 15, 15)),
        (
            DeflateOptions(server_no_context_takeover=True),
            f"{P}; server_no_context_takeover",
            (False, True, 15, 15),
        ),
        # RFC 7692 §7.1.1.2: the server may impose client_no_context_takeover.
        (DeflateOptions(), f"{P}; client_no_context_takeover", (True, False, 15, 15)),
        # We offered it: we keep our word even when it is not echoed.
        (DeflateOptions(client_no_context_takeover=True), P, (True, False, 15, 15)),
        (DeflateOptions(), f"{P}; server_max_window_bits=10", (False, False, 15, 10)),
        (
            DeflateOptions(server_max_window_bits=10),
            f"{P}; server_max_window_bits=10",
            (False, False, 15, 10),
        ),
        (DeflateOptions(server_max_window_bits=10), f"{P}; server_max_window_bits=8", (False, False, 15, 8)),
        (DeflateOptions(), f"{P}; client_max_window_bits=9", (False, False, 9, 15)),
        (DeflateOptions(), f"{P}; client_max_window_bits=8", (False, False, 8, 15)),
        (DeflateOptions(client_max_window_bits=11), P, (False, False, 11, 15)),
        (
            DeflateOptions(client_max_window_bits=11),
            f"{P}; client_max_window_bits=11",
            (False, False, 11, 15),
        ),
        (
            DeflateOptions(client_max_window_bits=11),
            f"{P}; client_max_window_bits=10",
            (False, False, 10, 15),
        ),
        (
            DeflateOptions(),
            f"{P}; client_max_window_bits=12; server_max_window_bits=13; "
            "client_no_context_takeover; server_no_context_takeover",
            (True, True, 12, 13),
        ),
    ],
)
def test_accept_response(options: DeflateOptions, response: str, engine: tuple[bool, bool, int, int]) -> None:
    pmd = accept_response(response_params(response), options)
    assert settings_of(pmd) == engine
    assert pmd.is_client is True


def test_accept_response_passes_tuning_to_the_engine() -> None:
    pmd = accept_response([], DeflateOptions(compress_level=9, memory_level=9, min_size=7))
    assert (pmd.compress_level, pmd.memory_level, pmd.min_size) == (9, 9, 7)


@pytest.mark.parametrize(
    ("options", "response"),
    [
        (DeflateOptions(), f"{P}; foo"),
        (DeflateOptions(), f"{P}; foo=1"),
        (DeflateOptions(), f"{P}; server_no_context_takeover; server_no_context_takeover"),
        (DeflateOptions(), f"{P}; client_no_context_takeover; client_no_context_takeover"),
        (DeflateOptions(), f"{P}; server_max_window_bits=10; server_max_window_bits=10"),
        (DeflateOptions(), f"{P}; client_max_window_bits=10; client_max_window_bits=9"),
        (DeflateOptions(), f"{P}; server_no_context_takeover=yes"),
        (DeflateOptions(), f"{P}; server_max_window_bits"),
        (DeflateOptions(), f"{P}; server_max_window_bits=16"),
        (DeflateOptions(), f"{P}; server_max_window_bits=7"),
        (DeflateOptions(), f"{P}; server_max_window_bits=08"),
        # RFC 7692 §7.1.2.2: a response must give the client's window a value.
        (DeflateOptions(), f"{P}; client_max_window_bits"),
        (DeflateOptions(), f"{P}; client_max_window_bits=16"),
        (DeflateOptions(), f"{P}; client_max_window_bits=7"),
        # What we asked for must be granted.
        (DeflateOptions(server_no_context_takeover=True), P),
        (DeflateOptions(server_max_window_bits=10), P),
        (DeflateOptions(server_max_window_bits=10), f"{P}; server_max_window_bits=11"),
        (DeflateOptions(client_max_window_bits=10), f"{P}; client_max_window_bits=11"),
    ],
)
def test_accept_response_rejects(options: DeflateOptions, response: str) -> None:
    with pytest.raises(NegotiationError):
        accept_response(response_params(response), options)


# -- negotiation end to end ------------------------------------------------


def negotiate(
    client_options: DeflateOptions, server_options: DeflateOptions
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    offer = client_offer(client_options)
    result = accept_offer(parse_extensions([offer]), server_options)
    assert result is not None
    header, server = result
    client = accept_response(response_params(header), client_options)
    return client, server


@pytest.mark.parametrize(
    ("client_options", "server_options"),
    [
        (DeflateOptions(), DeflateOptions()),
        (DeflateOptions(server_no_context_takeover=True), DeflateOptions()),
        (DeflateOptions(client_no_context_takeover=True), DeflateOptions()),
        (DeflateOptions(), DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True)),
        (DeflateOptions(server_max_window_bits=8, client_max_window_bits=8), DeflateOptions()),
        (DeflateOptions(server_max_window_bits=12), DeflateOptions(server_max_window_bits=9)),
        (DeflateOptions(client_max_window_bits=12), DeflateOptions(client_max_window_bits=8)),
        (DeflateOptions(), DeflateOptions(server_max_window_bits=10, client_max_window_bits=11)),
    ],
)
def test_negotiated_engines_mirror_each_other(
    client_options: DeflateOptions, server_options: DeflateOptions
) -> None:
    client, server = negotiate(client_options, server_options)
    assert client.local_no_context_takeover == server.remote_no_context_takeover
    assert client.remote_no_context_takeover == server.local_no_context_takeover
    assert client.local_max_window_bits == server.remote_max_window_bits
    assert client.remote_max_window_bits == server.local_max_window_bits
    # And they talk: several messages each way, some fragmented.
    for i in range(4):
        message = patterned(3000 + i * 500, seed=i)
        half = len(message) // 2
        up = [client.compress(message[:half], fin=False), client.compress(message[half:])]
        assert (
            b"".join(server.decompress(p, fin, None) for p, fin in zip(up, (False, True), strict=True))
            == message
        )
        down = server.compress(message[::-1])
        assert client.decompress(down, True, None) == message[::-1]


# -- RFC 7692 §7.2.3 examples ----------------------------------------------

HELLO = bytes.fromhex("f2 48 cd c9 c9 07 00")


def test_rfc_hello_compresses_to_the_example_bytes() -> None:
    # RFC 7692 §7.2.3.1
    assert make_engine().compress(b"Hello") == HELLO


def test_rfc_hello_decompresses() -> None:
    assert make_engine().decompress(HELLO, True, None) == b"Hello"


def test_rfc_hello_fragmented() -> None:
    # RFC 7692 §7.2.3.1: the same payload split over two frames.
    engine = make_engine()
    first = engine.decompress(bytes.fromhex("f2 48 cd"), False, None)
    second = engine.decompress(bytes.fromhex("c9 c9 07 00"), True, None)
    assert first + second == b"Hello"


def test_rfc_hello_twice_with_context_takeover() -> None:
    # RFC 7692 §7.2.3.2: the second "Hello" is a back-reference to the first.
    sender = make_engine()
    assert sender.compress(b"Hello") == HELLO
    second = sender.compress(b"Hello")
    assert second == bytes.fromhex("f2 00 11 00 00")
    receiver = make_engine()
    assert receiver.decompress(HELLO, True, None) == b"Hello"
    assert receiver.decompress(second, True, None) == b"Hello"


def test_rfc_hello_twice_without_context_takeover() -> None:
    sender = make_engine(local_nct=True)
    assert sender.compress(b"Hello") == HELLO
    assert sender.compress(b"Hello") == HELLO


def test_rfc_stored_block() -> None:
    # RFC 7692 §7.2.3.3: a DEFLATE block with no compression.
    payload = bytes.fromhex("00 05 00 fa ff 48 65 6c 6c 6f 00")
    assert make_engine().decompress(payload, True, None) == b"Hello"


def test_rfc_two_blocks_in_one_message() -> None:
    # RFC 7692 §7.2.3.5: "He" and "llo" in two blocks.
    payload = bytes.fromhex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")
    assert make_engine().decompress(payload, True, None) == b"Hello"


def test_rfc_bfinal_block() -> None:
    # RFC 7692 §7.2.3.4: a BFINAL block followed by one 0x00 octet.
    payload = bytes.fromhex("f3 48 cd c9 c9 07 00 00")
    assert make_engine().decompress(payload, True, None) == b"Hello"


def test_rfc_empty_fragment() -> None:
    # RFC 7692 §7.2.3.6: ending a message with an empty fragment.
    sender = make_engine()
    first = sender.compress(b"Hello", fin=False)
    last = sender.compress(b"", fin=True)
    assert first == HELLO + TAIL
    assert last == b"\x00"
    receiver = make_engine()
    assert receiver.decompress(first, False, None) + receiver.decompress(last, True, None) == b"Hello"


def test_empty_message() -> None:
    sender, receiver = link()
    payload = sender.compress(b"")
    # RFC 7692 §7.2.1: the header bits of the stripped empty block remain.
    assert payload == b"\x00"
    assert receiver.decompress(payload, True, 0) == b""
    # An empty payload with RSV1 set is also a valid empty message.
    assert receiver.decompress(b"", True, 0) == b""


# -- BFINAL and trailing garbage -------------------------------------------


def bfinal(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def test_bfinal_without_padding_octet() -> None:
    assert make_engine().decompress(bfinal(b"Hello"), True, None) == b"Hello"


@pytest.mark.parametrize("garbage", [b"\x01", b"\x00\x00", b"junk", b"\x00" + TAIL, TAIL])
def test_garbage_after_bfinal_is_refused(garbage: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        make_engine().decompress(bfinal(b"Hello") + garbage, True, None)
    assert info.value.close_code == 1007
    assert not isinstance(info.value, PayloadTooBig)


def test_bfinal_in_an_early_fragment_with_padding_later() -> None:
    engine = make_engine()
    assert engine.decompress(bfinal(b"Hello"), False, None) == b"Hello"
    assert engine.decompress(b"\x00", False, None) == b""
    assert engine.decompress(b"", True, None) == b""


@pytest.mark.parametrize("fragment", [b"\x01", b"\x00\x00", b"more"])
def test_garbage_fragment_after_bfinal_is_refused(fragment: bytes) -> None:
    engine = make_engine()
    engine.decompress(bfinal(b"Hello"), False, None)
    with pytest.raises(RemoteProtocolError) as info:
        engine.decompress(fragment, False, None)
    assert info.value.close_code == 1007


def test_garbage_in_final_fragment_after_bfinal_is_refused() -> None:
    engine = make_engine()
    engine.decompress(bfinal(b"Hello"), False, None)
    engine.decompress(b"\x00", False, None)
    with pytest.raises(RemoteProtocolError):
        engine.decompress(b"\x00", True, None)


def test_next_message_after_bfinal_starts_a_new_stream() -> None:
    # With context takeover negotiated, a BFINAL block still ends zlib's
    # stream: the next message must decode from a fresh decompressor.
    engine = make_engine()
    assert engine.decompress(bytes.fromhex("f3 48 cd c9 c9 07 00 00"), True, None) == b"Hello"
    assert engine.decompress(HELLO, True, None) == b"Hello"
    assert engine.decompress(bytes.fromhex("f2 00 11 00 00"), True, None) == b"Hello"


# -- corrupt data ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # BTYPE 11 is reserved
        bytes.fromhex("00 05 00 00 00 48 65 6c 6c 6f"),  # stored block with a bad NLEN
        bytes.fromhex("f2 00 11 00 00"),  # a back-reference with no history
    ],
)
def test_corrupt_data_is_1007(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        make_engine().decompress(payload, True, None)
    assert info.value.close_code == 1007
    assert isinstance(info.value.__cause__, zlib.error)


def test_corrupt_data_in_a_non_final_fragment() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        make_engine().decompress(b"\xff\xff", False, None)
    assert info.value.close_code == 1007


def test_decoder_restarts_after_an_error() -> None:
    engine = make_engine()
    with pytest.raises(RemoteProtocolError):
        engine.decompress(b"\xff\xff\xff\xff", True, None)
    # A fresh stream decodes; the broken state is gone.
    assert engine.decompress(HELLO, True, None) == b"Hello"


def test_stored_block_spanning_the_appended_tail() -> None:
    # A stored block announcing 8 bytes with only 4 sent swallows the 4
    # appended octets as content: well-formed DEFLATE, produced at fin.
    payload = bytes.fromhex("00 08 00 f7 ff") + b"Hell"
    engine = make_engine()
    assert engine.decompress(payload, True, None) == b"Hell" + TAIL
    # The same with a budget too small for the tail's output.
    with pytest.raises(PayloadTooBig):
        make_engine().decompress(payload, True, 6)


# -- window sizes ----------------------------------------------------------


@pytest.mark.parametrize("bits", range(8, 16))
def test_round_trip_with_every_window_size(bits: int) -> None:
    sender, receiver = link(bits=bits)
    for seed in range(3):
        message = patterned(20_000, seed)
        payload = sender.compress(message)
        assert len(payload) < len(message)
        assert receiver.decompress(payload, True, None) == message
        # Plain zlib with the same window reads it too.
        assert raw_inflate(payload, bits) == message


def test_window_8_output_reads_with_a_256_byte_window() -> None:
    # zlib compresses with 9 bits when 8 is negotiated; its distances stay
    # within 250 bytes, so zlib's own 8-bit inflater must accept every stream.
    sender = make_engine(local_bits=8, compress_level=9, memory_level=9)
    inflater = zlib.decompressobj(-8)
    for seed in range(5):
        message = patterned(50_000, seed, spread=200)
        payload = sender.compress(message)
        assert inflater.decompress(payload + TAIL) == message


def test_window_larger_than_negotiated_is_refused() -> None:
    # A peer that negotiated a 512-byte window but refers 2000 bytes back
    # into the previous message: the receiver only kept 512 bytes of it.
    first = random.Random(2).randbytes(2000)
    sender = make_engine(local_bits=15)
    payloads = [sender.compress(first), sender.compress(first)]
    assert len(payloads[1]) < 100
    small = make_engine(remote_bits=9)
    assert small.decompress(payloads[0], True, None) == first
    with pytest.raises(RemoteProtocolError) as info:
        small.decompress(payloads[1], True, None)
    assert info.value.close_code == 1007
    big = make_engine(remote_bits=15)
    assert [big.decompress(p, True, None) for p in payloads] == [first, first]


# -- context takeover ------------------------------------------------------

TEXT = b"The quick brown fox jumps over the lazy dog; " * 3 + b"0123456789" * 10


@pytest.mark.parametrize("sender_nct", [False, True])
@pytest.mark.parametrize("receiver_nct", [False, True])
def test_context_takeover_combinations(sender_nct: bool, receiver_nct: bool) -> None:
    sender = make_engine(local_nct=sender_nct)
    receiver = make_engine(remote_nct=receiver_nct, is_client=False)
    payloads = [sender.compress(TEXT) for _ in range(4)]
    if sender_nct:
        # No shared history: every message compresses the same way.
        assert len(set(payloads)) == 1
    else:
        # The window carries over: repeats are back-references, far smaller.
        assert all(len(p) < len(payloads[0]) // 4 for p in payloads[1:])
    if receiver_nct and not sender_nct:
        # A receiver that resets cannot follow a sender that doesn't: the
        # second message refers to history the receiver threw away.
        assert receiver.decompress(payloads[0], True, None) == TEXT
        with pytest.raises(RemoteProtocolError):
            receiver.decompress(payloads[1], True, None)
    else:
        for payload in payloads:
            assert receiver.decompress(payload, True, None) == TEXT


@pytest.mark.parametrize("nct", [False, True])
def test_context_takeover_with_fragmented_messages(nct: bool) -> None:
    sender, receiver = link(nct=nct)
    sizes = []
    for _ in range(3):
        parts = [sender.compress(TEXT[:50], fin=False), sender.compress(TEXT[50:], fin=True)]
        sizes.append(sum(map(len, parts)))
        out = receiver.decompress(parts[0], False, None) + receiver.decompress(parts[1], True, None)
        assert out == TEXT
    if nct:
        assert sizes[0] == sizes[1] == sizes[2]
    else:
        assert sizes[1] < sizes[0] // 2


def test_context_takeover_carries_across_mixed_messages() -> None:
    sender, receiver = link()
    rng = random.Random(5)
    history = [patterned(rng.randrange(0, 5000), seed) for seed in range(10)]
    for message in history + history:
        assert receiver.decompress(sender.compress(message), True, None) == message


# -- fragmentation and interop with zlib -----------------------------------


def test_fragments_form_one_stream() -> None:
    sender = make_engine()
    message = patterned(30_000, 3)
    parts = [message[i : i + 7000] for i in range(0, len(message), 7000)]
    payloads = [sender.compress(p, fin=i == len(parts) - 1) for i, p in enumerate(parts)]
    # Non-final fragments end in a sync flush, kept as is.
    assert all(p.endswith(TAIL) for p in payloads[:-1])
    assert not payloads[-1].endswith(TAIL)
    # One DEFLATE stream: plain zlib reads the concatenation.
    assert raw_inflate(b"".join(payloads)) == message


def test_compressed_stream_split_anywhere() -> None:
    message = patterned(10_000, 4)
    payload = raw_deflate(message)
    for cut in (0, 1, 2, len(payload) // 3, len(payload) - 1, len(payload)):
        receiver = make_engine()
        out = receiver.decompress(payload[:cut], False, None) + receiver.decompress(payload[cut:], True, None)
        assert out == message


def test_zlib_to_wsskit_and_back() -> None:
    message = patterned(40_000, 6)
    assert make_engine().decompress(raw_deflate(message, level=9), True, None) == message
    assert make_engine().decompress(raw_deflate(message, level=0), True, None) == message
    assert raw_inflate(make_engine(compress_level=1).compress(message)) == message


def test_compress_accepts_bytearray_and_memoryview() -> None:
    sender, receiver = link()
    message = patterned(1000, 7)
    for data in (bytearray(message), memoryview(message)):
        payload = sender.compress(data)
        assert isinstance(payload, bytes)
        assert receiver.decompress(memoryview(payload), True, None) == message


def test_compress_level_is_used() -> None:
    message = patterned(50_000, 8)
    stored = make_engine(compress_level=0).compress(message)
    best = make_engine(compress_level=9).compress(message)
    assert len(stored) > len(message)
    assert len(best) < len(message) // 2


# -- size limits and bombs -------------------------------------------------


def test_output_exactly_at_the_limit_is_allowed() -> None:
    message = b"a" * 1000
    payload = raw_deflate(message)
    assert make_engine().decompress(payload, True, 1000) == message


def test_output_one_byte_over_the_limit_is_refused() -> None:
    payload = raw_deflate(b"a" * 1000)
    with pytest.raises(PayloadTooBig) as info:
        make_engine().decompress(payload, True, 999)
    assert info.value.close_code == 1009


def test_zero_budget() -> None:
    assert make_engine().decompress(raw_deflate(b""), True, 0) == b""
    with pytest.raises(PayloadTooBig):
        make_engine().decompress(raw_deflate(b"x"), True, 0)


def test_negative_budget_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        make_engine().decompress(HELLO, True, -1)


def test_budget_across_fragments() -> None:
    # The connection passes what is left of the message limit per fragment.
    message = patterned(9000, 9)
    payload = raw_deflate(message)
    receiver = make_engine()
    limit = 8999
    got = 0
    with pytest.raises(PayloadTooBig):
        for i in range(0, len(payload), 100):
            chunk = payload[i : i + 100]
            got += len(receiver.decompress(chunk, i + 100 >= len(payload), limit - got))
    assert got <= limit


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """100 MiB of zeros as one compressed message (about 100 KB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    parts = [c.compress(chunk) for _ in range(100)]
    parts.append(c.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts)[:-4]
    assert len(payload) < 200_000
    return payload


def test_bomb_costs_no_more_than_the_limit(bomb: bytes) -> None:
    engine = make_engine()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(PayloadTooBig):
            engine.decompress(bomb, True, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Inflating it all would take 100 MiB; a bounded inflate is about 1 MiB.
    assert peak < 4 * MiB


def test_bomb_in_fragments_stops_at_the_limit(bomb: bytes) -> None:
    engine = make_engine()
    got = 0
    frames = 0
    total_frames = -(-len(bomb) // 4096)
    with pytest.raises(PayloadTooBig):
        for i in range(0, len(bomb), 4096):
            frames += 1
            got += len(engine.decompress(bomb[i : i + 4096], i + 4096 >= len(bomb), MiB - got))
    assert got <= MiB
    # It stopped early rather than reading the whole bomb.
    assert frames * 10 < total_frames


def test_unlimited_budget_inflates_everything() -> None:
    message = bytes(3 * MiB)
    assert make_engine().decompress(raw_deflate(message), True, None) == message


# -- property-based round trips --------------------------------------------

messages_st = st.lists(
    st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(str.encode),
        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(1, 200)),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=messages_st,
    nct=st.booleans(),
    bits=st.integers(8, 15),
    level=st.integers(-1, 9),
    data=st.data(),
)
def test_round_trip_property(
    messages: list[bytes], nct: bool, bits: int, level: int, data: st.DataObject
) -> None:
    sender = make_engine(local_nct=nct, local_bits=bits, compress_level=level)
    receiver = make_engine(remote_nct=nct, remote_bits=bits, is_client=False)
    for message in messages:
        # Fragment the message at arbitrary points when sending...
        cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=3)))
        bounds = [0, *cuts, len(message)]
        pieces = [message[a:b] for a, b in itertools.pairwise(bounds)]
        stream = b"".join(sender.compress(p, fin=i == len(pieces) - 1) for i, p in enumerate(pieces))
        # ...and split the compressed stream anywhere when receiving.
        split = data.draw(st.integers(0, len(stream)))
        # The budget is exactly the message size: never too small.
        head = receiver.decompress(stream[:split], False, len(message))
        tail = receiver.decompress(stream[split:], True, len(message) - len(head))
        assert head + tail == message


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=200), fin=st.booleans(), budget=st.one_of(st.none(), st.integers(0, 300)))
def test_arbitrary_input_fails_only_with_protocol_errors(
    payload: bytes, fin: bool, budget: int | None
) -> None:
    try:
        out = make_engine(remote_bits=9).decompress(payload, fin, budget)
    except RemoteProtocolError as exc:
        assert exc.close_code in (1007, 1009)
    else:
        assert budget is None or len(out) <= budget


# -- interop with python-websockets ----------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_interop_with_websockets(nct: bool, bits: int) -> None:
    from websockets.extensions.permessage_deflate import PerMessageDeflate as TheirDeflate
    from websockets.frames import Frame, Opcode

    ours = make_engine(local_nct=nct, remote_nct=nct, local_bits=bits, remote_bits=bits)
    theirs = TheirDeflate(nct, nct, bits, bits)
    for seed in range(3):
        message = patterned(5000, seed)
        # Ours to theirs, in two fragments.
        half = len(message) // 2
        first = Frame(Opcode.BINARY, ours.compress(message[:half], fin=False), fin=False, rsv1=True)
        last = Frame(Opcode.CONT, ours.compress(message[half:], fin=True), fin=True)
        assert bytes(theirs.decode(first).data) + bytes(theirs.decode(last).data) == message
        # Theirs to ours.
        frame = theirs.encode(Frame(Opcode.BINARY, message[::-1]))
        assert frame.rsv1
        assert ours.decompress(frame.data, True, None) == message[::-1]


def test_options_are_frozen() -> None:
    opts = DeflateOptions()
    with pytest.raises(AttributeError):
        opts.min_size = 3  # type: ignore[misc]
    assert replace(opts, min_size=3).min_size == 3


def _far_repeats() -> bytes:
    # A block repeated 20 KiB apart: a 15-bit window refers back to it, a
    # 12-bit (4 KiB) one cannot, so the window shows in the output.
    block = random.Random(7).randbytes(2000)
    filler = random.Random(8).randbytes(20000)
    return block + filler + block


def _zlib_payload(data: bytes, bits: int, memory_level: int) -> bytes:
    # What plain zlib makes with these settings, ending as RFC 7692 says.
    encoder = zlib.compressobj(6, zlib.DEFLATED, -bits, memory_level)
    return (encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize(
    ("negotiated", "window", "used"),
    [(15, 12, 12), (15, 15, 15), (10, 15, 10), (12, 12, 12), (8, 12, 9)],
)
def test_the_compressor_window_is_the_smaller_of_the_two(negotiated: int, window: int, used: int) -> None:
    # A sender may use less window than the peer allows (RFC 7692 §7.1.2.1),
    # never more; zlib's raw DEFLATE starts at 9 bits.
    data = _far_repeats()
    engine = make_engine(local_bits=negotiated, is_client=False, compress_window_bits=window)
    assert engine.compress(data) == _zlib_payload(data, used, 5)


def test_a_smaller_window_costs_bytes_on_far_repeats() -> None:
    data = _far_repeats()
    small = make_engine(is_client=False, compress_window_bits=12).compress(data)
    full = make_engine(is_client=False, compress_window_bits=15).compress(data)
    assert len(full) < len(small)


@pytest.mark.parametrize("bits", [7, 16])
def test_compress_window_bits_is_checked(bits: int) -> None:
    with pytest.raises(ValueError, match="compress_window_bits"):
        DeflateOptions(compress_window_bits=bits)
    with pytest.raises(ValueError, match="compress_window_bits"):
        make_engine(compress_window_bits=bits)


def test_the_defaults_are_light_on_memory() -> None:
    options = DeflateOptions()
    assert (options.compress_window_bits, options.memory_level, options.compress_level) == (12, 5, 6)
