"""Hypothesis strategies for fuzz inputs: raw bytes, and seeds mutated the way libFuzzer would.

Raw bytes alone rarely get past an HTTP parser or a handshake; mutating the
seed corpus (insert, delete, overwrite, flip, duplicate, truncate) keeps most
of a valid input and breaks a little of it, which is where parsers go wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

__all__ = ["fuzz_inputs", "mutate"]

# Bytes that mean something to the parsers: lengths at the 7/16/64-bit
# boundaries, line ends, header punctuation, the DEFLATE sync-flush tail.
_TOKENS = (
    b"\x00",
    b"\xff",
    b"\x7d",
    b"\x7e",
    b"\x7f",
    b"\x80",
    b"\xfe",
    b"\x00\x00\xff\xff",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"=",
    b'"',
    b"\\",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n",
    b"Sec-WebSocket-Protocol: chat\r\n",
    b"server_no_context_takeover",
    b"client_max_window_bits=8",
    b"//",
    b"[",
    b"]",
    b"?",
    b"#",
    b"%",
    b"@",
)

# (operation, position, size, bytes): the position is taken modulo the length.
_Edit = tuple[int, int, int, bytes]

_edits = st.tuples(
    st.integers(0, 5),
    st.integers(0, 2**16),
    st.integers(1, 300),
    st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(_TOKENS)),
)


def mutate(seed: bytes, edits: Sequence[_Edit]) -> bytes:
    """Apply ``edits`` to ``seed`` in order and return the result."""
    data = bytearray(seed)
    for op, where, size, chunk in edits:
        pos = where % (len(data) + 1)
        if op == 0:
            data[pos:pos] = chunk
        elif op == 1:
            del data[pos : pos + size]
        elif op == 2:
            data[pos : pos + len(chunk)] = chunk
        elif op == 3:
            if data:
                data[pos % len(data)] ^= size & 0xFF or 0x80
        elif op == 4:
            data[pos:pos] = data[pos : pos + size]
        else:
            del data[pos:]
    return bytes(data)


def fuzz_inputs(seeds: Sequence[bytes], *, max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """Inputs for a target: its seeds mutated by up to 6 edits, or raw bytes."""
    raw = st.binary(max_size=max_size)
    if not seeds:
        return raw
    mutated = st.builds(mutate, st.sampled_from(list(seeds)), st.lists(_edits, max_size=6))
    return st.one_of(mutated, raw)
