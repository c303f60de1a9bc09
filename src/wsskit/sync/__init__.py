"""The blocking front end: :func:`connect` for programs without asyncio.

Connections run on one background event loop thread (:mod:`wsskit.sync.loop`)
that drives the asyncio implementation; see :mod:`wsskit.sync.client`.
"""

from __future__ import annotations

from .client import ClientConnection, connect

__all__ = ["connect", "ClientConnection"]
