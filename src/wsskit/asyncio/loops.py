"""Which event loop wsskit's own programs run on: uvloop when it is installed.

``wsskit serve``, ``wsskit connect`` and the thread of the blocking client
(:mod:`wsskit.sync`) make their own event loop. They take uvloop when it is
installed (``pip install 'wsskit[speed]'``): the same code runs about a third
faster per message on it. ``asyncio`` forces the standard loop, for
comparison or to rule uvloop out while chasing a bug; ``uvloop`` insists on
it and fails with an install hint when it is missing.

The choice is ``"auto"`` (the default), ``"asyncio"`` or ``"uvloop"``; where a
program takes no argument for it, the environment variable ``WSSKIT_LOOP``
gives it. Code that runs its own loop (``asyncio.run(main())`` around
:func:`wsskit.asyncio.serve`) chooses for itself: wsskit works on both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "loop_name", "new_event_loop", "run"]

#: The accepted choices.
LOOPS = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


def loop_name(choice: str | None = None) -> str:
    """Resolve ``choice`` (``None``: ``$WSSKIT_LOOP``, else ``"auto"``) to ``"asyncio"`` or ``"uvloop"``.

    Raises :class:`ValueError` for an unknown choice, and for ``"uvloop"``
    when uvloop is not installed (with the command that installs it).
    """
    if choice is None:
        choice = os.environ.get("WSSKIT_LOOP", "") or "auto"
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: choose one of {', '.join(LOOPS)}")
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ValueError("uvloop is not installed: pip install 'wsskit[speed]'")
    if choice == "auto":
        return "uvloop" if installed else "asyncio"
    return choice


def new_event_loop(choice: str | None = None) -> asyncio.AbstractEventLoop:
    """A new event loop of the chosen kind (see :func:`loop_name`)."""
    if loop_name(choice) == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """Run ``main`` to its end on a new loop of the chosen kind, as :func:`asyncio.run` does.

    Raises what :func:`loop_name` raises (before ``main`` starts; it is
    closed then, so no "never awaited" warning follows) and whatever
    ``main`` raises.
    """
    try:
        name = loop_name(loop)
    except ValueError:
        main.close()
        raise
    if name == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
