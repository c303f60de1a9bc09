"""Channels: publish/subscribe over WebSocket with history, resume without loss, and presence.

A :class:`Hub` speaks the ``wsskit.channels.v1`` protocol (see
``docs/channels-protocol.md`` and :mod:`wsskit.channels.wire`) on each
connection, over a :class:`Backplane` that carries publications between nodes
and keeps each channel's history: :class:`MemoryBackplane` (``memory://``) in
one process, Redis or NATS across nodes. :class:`Namespace` sets history,
presence and permissions per channel prefix. :class:`Client` is the Python
client (``wsskit serve`` also serves ``/wsskit.js`` for browsers).
"""

from __future__ import annotations

from .backplanes.base import (
    Backplane,
    ClientInfo,
    Delivery,
    DeliveryCallback,
    HistoryResult,
    Join,
    Leave,
    Publication,
    Reset,
    Retention,
    StreamPosition,
    backplane_from_url,
)
from .backplanes.memory import MemoryBackplane, MemoryStore
from .client import ChannelError, ChannelMessage, ChannelProtocolError, Client, HistoryPage, Subscription
from .hub import ChannelSession, Hub, HubLimits, HubStats
from .namespaces import Namespace, Namespaces, Permission, channel_token, verify_channel_token
from .wire import PATH, SUBPROTOCOL, ErrorCode, WireLimits, should_reconnect

__all__ = [
    "Client",
    "Subscription",
    "ChannelMessage",
    "HistoryPage",
    "ChannelError",
    "ChannelProtocolError",
    "Hub",
    "HubLimits",
    "HubStats",
    "ChannelSession",
    "Namespace",
    "Namespaces",
    "Permission",
    "channel_token",
    "verify_channel_token",
    "Backplane",
    "backplane_from_url",
    "MemoryBackplane",
    "MemoryStore",
    "Publication",
    "StreamPosition",
    "HistoryResult",
    "Retention",
    "ClientInfo",
    "Join",
    "Leave",
    "Reset",
    "Delivery",
    "DeliveryCallback",
    "SUBPROTOCOL",
    "PATH",
    "ErrorCode",
    "WireLimits",
    "should_reconnect",
]
