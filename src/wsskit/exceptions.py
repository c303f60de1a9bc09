"""Every exception wsskit raises, under one root.

::

    WebSocketError
    ├── ProtocolError
    │   ├── LocalProtocolError        we misused the API (send after close, bad close code)
    │   └── RemoteProtocolError       the peer broke RFC 6455; ``.close_code`` says how
    │       └── PayloadTooBig         a message or frame over the limit (close 1009)
    ├── HandshakeError
    │   ├── InvalidHandshake          a malformed upgrade request or response
    │   │   └── ProxyError            the proxy did not open the tunnel (407, 5xx, SOCKS reply)
    │   ├── InvalidStatus             the server answered with a status other than 101
    │   └── NegotiationError          subprotocol or extension negotiation failed
    ├── ConnectionClosed              ``.code`` ``.reason``
    │   ├── ConnectionClosedOK        closed with 1000, 1001 or an empty Close (1005)
    │   └── ConnectionClosedError     any other code, or no close frame at all (1006)
    ├── InvalidState (RuntimeError)   an operation the connection's state forbids
    ├── InvalidURI (ValueError)       a URI that is not ws:// or wss://
    ├── Rejected                      a guard refused the request; ``.status``
    │   ├── Unauthorized              401
    │   ├── Forbidden                 403
    │   └── RateLimited               429; ``.retry_after`` in seconds
    │       └── Overloaded            503: a cap on connections or handshakes is reached
    ├── GiveUp                        reconnecting stopped: attempts or time ran out
    └── BackplaneError                a broker failure; ``__cause__`` is the driver's error

Timeouts raise the builtin :class:`TimeoutError`; failures to connect raise
:class:`OSError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.events import Reject

__all__ = [
    "WebSocketError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PayloadTooBig",
    "HandshakeError",
    "InvalidHandshake",
    "InvalidStatus",
    "ProxyError",
    "NegotiationError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidState",
    "InvalidURI",
    "Rejected",
    "Unauthorized",
    "Forbidden",
    "RateLimited",
    "Overloaded",
    "GiveUp",
    "BackplaneError",
]


class WebSocketError(Exception):
    """The root of every wsskit exception."""


class ProtocolError(WebSocketError):
    """A violation of RFC 6455, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """Our own code asked for something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; the connection closes with :attr:`close_code`."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class PayloadTooBig(RemoteProtocolError):
    """A frame or message exceeded the configured limit (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1009)


class HandshakeError(WebSocketError):
    """The opening handshake failed."""


class InvalidHandshake(HandshakeError):
    """The upgrade request or response is malformed.

    On the server side :attr:`status` is the HTTP status to answer with.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class InvalidStatus(HandshakeError):
    """The server answered the upgrade with a status other than 101.

    :attr:`response` is the :class:`~wsskit.protocol.events.Reject` event
    holding the status, headers and body.
    """

    def __init__(self, response: Reject) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {response.status}")
        self.response = response


class ProxyError(InvalidHandshake):
    """The proxy did not open the tunnel to the server.

    :attr:`response` holds an HTTP proxy's answer (its status, headers and
    body: a 407 carries ``Proxy-Authenticate``) and is None for SOCKS, whose
    reply code is in :attr:`reply_code` (None when the proxy refused the
    credentials or answered nonsense). :attr:`transient` says whether the
    same request may succeed later (the proxy could not reach the server).

    It is an :class:`~wsskit.exceptions.InvalidHandshake` (a
    :class:`~wsskit.exceptions.HandshakeError`) rather than an
    :class:`OSError`: like the server's own refusals
    (:class:`~wsskit.exceptions.InvalidStatus`), a proxy's 407 or 403 is an
    answer, not a network failure, and code that retries on ``OSError``
    must not retry a wrong password forever. Failures to reach the proxy at
    all stay :class:`OSError`, and the reconnecting client retries a proxy's
    5xx answer or transient SOCKS reply as it would a server's.
    """

    def __init__(
        self,
        message: str,
        *,
        response: Reject | None = None,
        reply_code: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message, 502)
        self.response = response
        self.reply_code = reply_code
        self.transient = transient


class NegotiationError(HandshakeError):
    """Subprotocol or extension negotiation failed."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; :attr:`code` and :attr:`reason` say how.

    ``code`` is the close code received from the peer, or 1006 when the
    connection dropped without a close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        detail = f"{code} ({reason})" if reason else str(code)
        super().__init__(f"connection closed: {detail}")


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: 1000, 1001, or a Close without a code (1005).

    A browser's bare ``close()`` sends a Close frame without a code, so 1005
    counts as a normal close too.
    """


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or without a close frame (1006)."""


class InvalidState(WebSocketError, RuntimeError):
    """The operation is not allowed in the connection's current state."""


class InvalidURI(WebSocketError, ValueError):
    """The URI is not a valid ws:// or wss:// URI."""


class Rejected(WebSocketError):
    """A guard refused the handshake with HTTP :attr:`status`.

    :attr:`headers` go into the response (``WWW-Authenticate`` for a 401).
    """

    status = 403

    def __init__(
        self, message: str = "", *, status: int | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message or self.__class__.__name__)
        if status is not None:
            self.status = status
        self.headers = headers


class Unauthorized(Rejected):
    """No valid credentials (401)."""

    status = 401


class Forbidden(Rejected):
    """Valid credentials, or none needed, but not allowed (403)."""

    status = 403


class RateLimited(Rejected):
    """Too many requests (429); retry after :attr:`retry_after` seconds."""

    status = 429

    def __init__(
        self, message: str = "", *, retry_after: float = 1.0, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class Overloaded(RateLimited):
    """A cap is reached (503): too many connections or handshakes, not a rate exceeded."""

    status = 503


class GiveUp(WebSocketError):
    """Reconnecting stopped: the attempts or the time allowed ran out.

    ``__cause__`` is the last failure; :attr:`attempts` counts the attempts made.
    """

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class BackplaneError(WebSocketError):
    """The message broker failed; ``__cause__`` holds the driver's exception."""


def closed_exception(code: int, reason: str) -> ConnectionClosed:
    """Return the :class:`ConnectionClosed` subclass that fits ``code``."""
    if code in (1000, 1001, 1005):
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)
