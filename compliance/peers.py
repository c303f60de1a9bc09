"""The two WebSocket implementations the Autobahn echo peers can run on.

``wsskit`` is the one under test; ``websockets`` (python-websockets) is a reference
that proves the harness itself works. Both are configured generously for the suite:

- no message limit (case 9.x sends messages of up to 16 MiB);
- no frame or fragment limit (9.3/9.4 split a 4 MiB message into frames as small
  as 64 bytes: 65536 fragments);
- permessage-deflate on: the server accepts every valid offer, the client offers it
  with ``client_max_window_bits`` (cases 12.x and 13.x negotiate all of its options);
- no keepalive pings (the suite counts every frame it receives).

wsskit's asyncio API is young, so options are matched against the signature of
``wsskit.serve`` / ``wsskit.connect``; an option the function does not take is
dropped with a note on stderr rather than failing the whole run.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["IMPLS", "Peer", "load"]

IMPLS = ("wsskit", "websockets")


@dataclass(frozen=True)
class Peer:
    """How to open connections with one implementation."""

    name: str
    serve: Callable[..., Any]
    connect: Callable[..., Any]
    server_options: dict[str, Any]
    client_options: dict[str, Any]
    closed_errors: tuple[type[BaseException], ...]


def _fit(func: Callable[..., Any], options: dict[str, Any], label: str) -> dict[str, Any]:
    """Keep the options ``func`` accepts; say on stderr which ones were dropped."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    kept = {k: v for k, v in options.items() if k in params}
    dropped = sorted(set(options) - set(kept))
    if dropped:
        print(f"[{label}] not supported by this version, left out: {', '.join(dropped)}", file=sys.stderr)
    return kept


def _load_wsskit() -> Peer:
    import wsskit

    # Looked up by name: the asyncio front end is written alongside this harness.
    names = ("serve", "connect", "Limits")
    missing = [n for n in names if not hasattr(wsskit, n)]
    if missing:
        raise SystemExit(
            f"wsskit {getattr(wsskit, '__version__', '?')} has no {', '.join(missing)} yet; "
            "use --impl websockets to check the harness"
        )
    serve: Callable[..., Any] = getattr(wsskit, names[0])
    connect: Callable[..., Any] = getattr(wsskit, names[1])
    limits_cls: Callable[..., Any] = getattr(wsskit, names[2])
    limits = limits_cls(
        **_fit(
            limits_cls,
            {"max_message_size": None, "max_frame_size": None, "max_fragments": None},
            "wsskit.Limits",
        )
    )
    common: dict[str, Any] = {
        "compression": "deflate",
        "max_size": None,
        "limits": limits,
        "ping_interval": None,
        "max_queue": None,
    }
    from wsskit.exceptions import ConnectionClosed

    return Peer(
        name="wsskit",
        serve=serve,
        connect=connect,
        server_options=_fit(serve, common, "wsskit.serve"),
        client_options=_fit(connect, common, "wsskit.connect"),
        closed_errors=(ConnectionClosed,),
    )


def _load_websockets() -> Peer:
    # websockets reads its fragment limit (default 4096) from the environment when its
    # asyncio.messages module is imported; 9.3.x/9.4.x need 65536 fragments.
    os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(2**20))
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    common: dict[str, Any] = {
        "compression": "deflate",
        "max_size": None,
        "max_queue": None,
        "ping_interval": None,
    }
    return Peer(
        name="websockets",
        serve=serve,
        connect=connect,
        server_options=dict(common),
        # proxy=None: never route a loopback test through $HTTPS_PROXY / $ALL_PROXY.
        client_options={**common, "proxy": None},
        closed_errors=(ConnectionClosed,),
    )


def load(name: str) -> Peer:
    """Import one implementation and return its configured :class:`Peer`.

    Raises ``SystemExit`` with a readable message when it cannot be used.
    """
    if name == "wsskit":
        return _load_wsskit()
    if name == "websockets":
        return _load_websockets()
    raise SystemExit(f"unknown implementation {name!r}; choose one of {', '.join(IMPLS)}")
