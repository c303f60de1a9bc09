"""The events a connection core exchanges with its user.

Received events come out of :meth:`Connection.events_received`; events to send
go into :meth:`Connection.send`. All are frozen, slotted dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..exceptions import InvalidHandshake
from .headers import Headers

__all__ = [
    "Event",
    "Request",
    "Accept",
    "Reject",
    "TextMessage",
    "BytesMessage",
    "Ping",
    "Pong",
    "Close",
]


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed HTTP request received by a server core.

    ``target`` is the request target as sent (path and query).
    ``subprotocols`` and ``extensions`` are what the client offered.
    When the request is not a valid WebSocket upgrade (a plain GET, a POST, a
    wrong version), ``error`` says why and carries the HTTP status to answer
    with; the server may still answer it as plain HTTP (a page, a health check).
    ``body`` is the body of a plain ``POST`` (see :mod:`wsskit.protocol.http`),
    read in full before the Request is emitted; it is empty for any other request.
    """

    target: str
    headers: Headers
    subprotocols: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    method: str = "GET"
    error: InvalidHandshake | None = None
    body: bytes = b""

    @property
    def is_upgrade(self) -> bool:
        """True when this is a valid WebSocket upgrade request."""
        return self.error is None

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        # The target is in origin form (RFC 9112 §3.2.1): split it by hand,
        # as urlsplit reads "//[x/" as a broken authority and raises.
        return self.target.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (the last value wins for repeated names)."""
        return dict(parse_qsl(self.target.partition("?")[2], keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class Accept:
    """The handshake succeeded.

    A server sends it to accept a :class:`Request`, choosing a ``subprotocol``
    and adding ``headers``. A client core emits it when the server answered 101;
    then ``subprotocol``, ``extensions`` and ``headers`` hold the response's.
    """

    subprotocol: str | None = None
    headers: Headers = field(default_factory=Headers)
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """The handshake failed with an HTTP response.

    A server sends it to refuse a :class:`Request`; a client core emits it when
    the server answered with a status other than 101.
    """

    status: int = 403
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A text message. Received messages are always whole (``fin`` is True).

    To send a message in fragments, send each with ``fin=False`` but the last.
    """

    data: str
    fin: bool = True


@dataclass(frozen=True, slots=True)
class BytesMessage:
    """A binary message; fragments as for :class:`TextMessage`."""

    data: bytes | bytearray | memoryview
    fin: bool = True


@dataclass(frozen=True, slots=True)
class Ping:
    """A Ping control frame (125 bytes of payload at most)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """A Pong control frame (125 bytes of payload at most)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """A Close frame. A received Close without a status has ``code`` 1005."""

    code: int = 1000
    reason: str = ""


Event = Request | Accept | Reject | TextMessage | BytesMessage | Ping | Pong | Close
