"""What the benchmark's processes share: CPU and memory readings, sizes, frames, payloads.

Every program in bench/ is run as a script (``python bench/X.py``), so this
module is imported as ``common`` from the scripts' own folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import struct
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# The one message limit of every server and client: 2 MiB, above the largest
# message (1 MiB) and the warm-up messages.
MAX_SIZE = 2**21
WARMUP_LARGE_SIZE = 2**20
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2**20, "mb": 2**20, "mib": 2**20}


# -- CPU time and memory of a process ----------------------------------------------


def cpu_ns(pid: int) -> int:
    """CPU time (user + system) a process has used so far, in nanoseconds.

    Summed over its threads from ``/proc/PID/task/*/schedstat`` (nanosecond
    resolution); where schedstat is missing, ``utime + stime`` from
    ``/proc/PID/stat`` (clock-tick resolution, usually 10 ms).
    """
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
                continue
    except OSError:
        return cpu_ticks_ns(pid)
    return total if total else cpu_ticks_ns(pid)


def cpu_ticks_ns(pid: int) -> int:
    """``utime + stime`` of a process from ``/proc/PID/stat``, in nanoseconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks * 1_000_000_000 // _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``/proc/PID/statm``), in bytes."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * _PAGE_SIZE


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the new soft limit.

    Thousands of connections need thousands of file descriptors, and the
    usual soft limit is 1024. The hard limit is what an unprivileged process
    may reach (``ulimit -Hn``); children inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def nofile_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def wall_ns() -> int:
    """The wall clock in ns: CLOCK_REALTIME, the clock of the kernel's receive timestamps."""
    return time.time_ns()


# -- sizes -------------------------------------------------------------------------


def parse_size(text: str, largest: int = MAX_SIZE // 2) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 16, 1KiB, 64KiB)")
    size = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 1 <= size <= largest:
        raise argparse.ArgumentTypeError(f"sizes go from 1 byte to {format_size(largest)}")
    return size


def format_size(size: int) -> str:
    for unit, name in ((2**20, "MiB"), (1024, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


# -- payloads and frames -----------------------------------------------------------


def json_like_text(size: int, seed: int = 5) -> str:
    """``size`` bytes of ASCII JSON-like text, the same for every run (compressible, like real JSON).

    A list of event records with repeated keys, a few dozen distinct words and
    numbers of varying digits: permessage-deflate shrinks it about 4-6 times.
    """
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    kinds = ["click", "view", "purchase", "login", "logout", "scroll"]
    parts: list[str] = []
    length = 1
    index = 0
    while length < size:
        record = {
            "id": 100000 + index,
            "user": f"user-{rng.randrange(5000)}",
            "event": rng.choice(kinds),
            "ts": 1700000000000 + rng.randrange(10**9),
            "value": round(rng.uniform(0, 1000), 3),
            "tags": rng.sample(words, 3),
            "ok": rng.random() < 0.9,
        }
        text = json.dumps(record, separators=(",", ":"))
        parts.append(text)
        length += len(text) + 1
        index += 1
    body = "[" + ",".join(parts)
    # Trim to the exact size and close the list (still valid UTF-8; JSON only roughly).
    return (body[: size - 1] + "]")[:size]


def frame_header(opcode: int, length: int, *, fin: bool = True, rsv1: bool = False, mask: bool) -> bytes:
    """An RFC 6455 §5.2 frame header (without the masking key)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if mask else 0
    if length < 126:
        return struct.pack("!BB", first, bit | length)
    if length < 2**16:
        return struct.pack("!BBH", first, bit | 126, length)
    return struct.pack("!BBQ", first, bit | 127, length)


def masked_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """A final client frame with a fresh mask: header, masking key, masked payload."""
    length = len(payload)
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return frame_header(opcode, length, rsv1=rsv1, mask=True) + mask + masked


def server_frame_length(payload_length: int) -> int:
    """Bytes on the wire of one unmasked (server) frame carrying ``payload_length`` bytes."""
    return len(frame_header(0x2, payload_length, mask=False)) + payload_length


def tls_description(ssl_object: Any) -> str | None:
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return f"{cipher[1]} {cipher[0]}" if cipher else None


def emit(obj: object) -> None:
    """Print one JSON line on stdout: how the programs report to bench/run.py."""
    print(json.dumps(obj), flush=True)
