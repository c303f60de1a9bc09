"""The hand-made seed corpus: a few valid inputs per target.

``python fuzz/run.py --write-seeds`` (re)writes ``fuzz/corpus/<target>/<name>``
from the inputs below; the files are kept in the repository so that a fuzzer starts
from them without running this. Layouts with settings bytes are those of
``fuzz/targets.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from wsskit.protocol.frames import encode_frame
from wsskit.protocol.handshake import accept_key
from wsskit.protocol.mask import apply_mask

from .targets import FUZZ_KEY

__all__ = ["CORPUS", "seeds", "write_corpus"]

CORPUS = Path(__file__).resolve().parent / "corpus"

# Seeds are test data, not traffic: a fixed masking key keeps them reproducible.
_KEY = b"\x37\xfa\x21\x3d"

_UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8443\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: " + FUZZ_KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Origin: https://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
_PLAIN_UPGRADE = (
    b"GET / HTTP/1.1\r\n"
    b"Host: [::1]:9000\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
# A target that urlsplit reads as an authority: RFC 3986 §3.3 edge cases.
_ODD_TARGET = _PLAIN_UPGRADE.replace(b"GET / ", b"GET //example.com/chat;v=1?room=%41&x#frag ")
_ACCEPT = accept_key(FUZZ_KEY).encode()
_SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + _ACCEPT + b"\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_max_window_bits=10\r\n"
    b"\r\n"
)
_SWITCHING_PLAIN = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + _ACCEPT + b"\r\n"
    b"\r\n"
)
# The answer to the demanding offer client_connection makes with settings bit 3.
_SWITCHING_DEMANDED = _SWITCHING_PLAIN.replace(
    b"\r\n\r\n",
    b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
    b"server_max_window_bits=10; client_max_window_bits=12\r\n\r\n",
)
_FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
    b"forbidden"
)


def _frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool) -> bytes:
    header, _ = encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=False)
    if not mask:
        return bytes(header) + payload
    raw = bytes(header)
    return bytes((raw[0], raw[1] | 0x80)) + raw[2:] + _KEY + apply_mask(payload, _KEY)


def _deflate(*messages: bytes, bits: int = 15, takeover: bool = True) -> list[bytes]:
    """Compress messages as one sender, with or without context takeover (RFC 7692 §7.2.1)."""
    encoder = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = []
    for message in messages:
        if not takeover:
            encoder = zlib.compressobj(6, zlib.DEFLATED, -bits)
        data = encoder.compress(message) + encoder.flush(zlib.Z_SYNC_FLUSH)
        out.append(data[:-4])
    return out


def _frames(*, mask: bool, takeover: bool = True) -> bytes:
    first, second, third = _deflate(
        b"Hello, compressed world! " * 4,
        b"Hello, compressed world! again",
        "and a compressed message in two fragments, ünïcödé".encode(),
        bits=10,
        takeover=takeover,
    )
    return b"".join(
        (
            _frame(0x1, "héllo".encode(), mask=mask),
            _frame(0x2, bytes(range(200)), mask=mask),
            _frame(0x9, b"ping", mask=mask),
            _frame(0x1, b"frag", fin=False, mask=mask),
            _frame(0xA, b"", mask=mask),
            _frame(0x0, b"mented", mask=mask),
            _frame(0x1, first, rsv1=True, mask=mask),
            _frame(0x2, second, rsv1=True, mask=mask),
            _frame(0x1, third[:12], fin=False, rsv1=True, mask=mask),
            _frame(0x9, b"", mask=mask),
            _frame(0x0, third[12:], mask=mask),
            _frame(0x8, b"\x03\xe8bye", mask=mask),
        )
    )


def _fragments(*parts: tuple[bool, bytes]) -> bytes:
    """The inflate / deflate_roundtrip fragment layout: FIN and length, then data."""
    out = bytearray()
    for fin, data in parts:
        out += bytes(((len(data) >> 8) << 1 | fin, len(data) & 0xFF)) + data
    return bytes(out)


def _inflate_seeds() -> dict[str, bytes]:
    one, two, three = _deflate(b"a message " * 30, b"a message that refers back", b"\x00" * 1000)
    encoder = zlib.compressobj(9, zlib.DEFLATED, -15)
    final = encoder.compress(b"ends with BFINAL") + encoder.flush(zlib.Z_FINISH)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bomb.compress(bytes(200_000)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    narrow = _deflate(b"window " * 40, bits=9)[0]
    return {
        # window 15, context takeover, max 65536
        "takeover": b"\x67" + _fragments((True, one), (True, two), (True, three)),
        # window 15, no context takeover, max 1000, one message in three fragments
        "fragmented": b"\x4f" + _fragments((False, one[:5]), (False, one[5:]), (True, b"")),
        "bfinal": b"\x37" + _fragments((True, final + b"\x00"), (True, one)),
        # max 100: the bomb is cut at 101 bytes
        "bomb": b"\x37" + _fragments((True, zeros[:-4])),
        # window 9
        "narrow": b"\x01" + _fragments((True, narrow)),
    }


def seeds() -> dict[str, dict[str, bytes]]:
    """Return the seeds of every target, by target and file name."""
    post = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
    page = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\n\r\n"
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    old = b"HTTP/1.0 400\r\nContent-Length: 3\r\n\r\nbad"
    masked = _frames(mask=True)
    unmasked = _frames(mask=False)
    roundtrip = (
        b"\x02"  # chunk size 1 byte
        + bytes((0x01, 5))
        + b"hello"  # text
        + bytes((0x42 | 0x10, 250))
        + b"abc"  # long binary (64-bit length), FIN
        + bytes((0x00, 3))
        + b"frg"  # continuation, not FIN
        + bytes((0x03, 2))
        + b"\x03\xe8"  # close
        + bytes((0x21, 4))
        + b"rsv1"  # text with RSV1
        + bytes((0x44, 1))
        + b"\x01\x02\x03"  # short 16-bit length binary
    )
    return {
        "http_request": {
            "upgrade": _UPGRADE,
            "plain_upgrade": _PLAIN_UPGRADE,
            "odd_target": _ODD_TARGET,
            "post": post,
            "page": page,
        },
        "http_response": {"switching": _SWITCHING, "forbidden": _FORBIDDEN, "early": early, "http10": old},
        "server_handshake": {
            "upgrade": _UPGRADE,
            "with_frames": _PLAIN_UPGRADE + masked,
            "odd_target": _ODD_TARGET,
            "post": post,
            "page": page,
        },
        "client_handshake": {
            "switching": _SWITCHING,
            "plain": _SWITCHING_PLAIN + unmasked,
            "forbidden": _FORBIDDEN,
            "early": early + _SWITCHING,
        },
        "frames": {
            "masked": masked,
            "unmasked": unmasked,
            "long_header": _frame(0x2, b"", mask=True)[:1] + b"\xff" + (70000).to_bytes(8, "big") + _KEY,
        },
        "frame_roundtrip": {"mixed": roundtrip},
        "inflate": _inflate_seeds(),
        "deflate_roundtrip": {
            # window 8, context takeover, level 6; memory level 8
            "window8": b"\x70\x07" + _fragments((True, b"text " * 20)),
            "fragments": b"\x2b\x08"
            + _fragments((False, b"first part, "), (True, b"second part"))
            + bytes((0x03, 4))
            + b"rep!"
            + b"\x40",
        },
        "server_connection": {
            # deflate, whole input at once
            "deflate": b"\x01" + _UPGRADE + masked,
            # 7-byte chunks, EOF at the end
            "chunks": b"\x84" + _PLAIN_UPGRADE + masked,
            # deflate, defer_failure, answered late, then a reserved opcode
            "deferred": b"\x0b" + _UPGRADE + masked[:-10] + _frame(0x3, b"", mask=True),
            "page": b"\x00" + page,
        },
        "client_connection": {
            "deflate": b"\x01" + _SWITCHING + unmasked,
            # sends messages on opening, 3-byte chunks
            "chunks_send": b"\x70" + _SWITCHING_PLAIN + unmasked,
            "forbidden": b"\x04" + _FORBIDDEN,
            # deflate with demanding options
            "demanding": b"\x09" + _SWITCHING_DEMANDED + _frames(mask=False, takeover=False),
        },
        "proxy_header": {
            "v1_tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" + _UPGRADE,
            "v1_tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n\x16\x03\x01",
            "v1_unknown": b"PROXY UNKNOWN\r\n",
            "v2_tcp4_tlv": _proxy_v2(
                0x21, 0x11, bytes((192, 0, 2, 1, 198, 51, 100, 2)) + b"\xdc\x04\x01\xbb", b"\x04\x00\x02ok"
            ),
            "v2_tcp6": _proxy_v2(0x21, 0x21, bytes(range(32)) + b"\x00\x50\x01\xbb", b""),
            "v2_local": _proxy_v2(0x20, 0x00, b"", b"") + b"GET / HTTP/1.1\r\n",
        },
    }


def _proxy_v2(command: int, family: int, addresses: bytes, tlvs: bytes) -> bytes:
    # A version 2 PROXY header: signature, version/command, family, length, body.
    body = addresses + tlvs
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes((command, family)) + len(body).to_bytes(2, "big") + body


def write_corpus(root: Path = CORPUS) -> int:
    """Write every seed under ``root``; return how many files were written."""
    count = 0
    for target, files in seeds().items():
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
            count += 1
    return count
