"""``POST /api/publish``: publishing into channels from a backend, over HTTP.

The request::

    POST /api/publish HTTP/1.1
    Host: ws.example.com
    Authorization: Bearer <token>
    Content-Type: application/json
    Content-Length: ...

    {"channel": "chat:lobby", "data": {"text": "hi"}, "idempotency_key": "msg-42"}

is answered with ``200 {"channel": ..., "offset": ..., "epoch": ...}``, or:

- 401 with ``WWW-Authenticate`` without a token or with one not configured;
- 403 when the token may not publish into the channel's namespace, or the
  request carries an ``Origin`` the server does not allow (a page on another
  site must not make the user's browser publish);
- 400 for a body that is not a JSON object with a valid ``channel``, a
  ``data`` member and an optional string ``idempotency_key`` (nothing else);
- 404 when no namespace takes the channel;
- 405 for a method other than POST; 415 for a ``Content-Type`` other than JSON;
- 503 with ``Retry-After`` when the backplane fails: a publish during an
  outage fails loudly, and the client retries with the same idempotency key.

Bodies over ``Limits.max_request_body`` (64 KiB) get 413, and a POST without
``Content-Length`` 411, from the HTTP parser itself.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..channels.hub import Hub
from ..channels.namespaces import namespace_of
from ..channels.wire import is_idempotency_key
from ..exceptions import BackplaneError, Rejected
from ..guards.auth import AuthContext
from ..guards.origin import OriginPolicy
from ..protocol.events import Reject, Request
from ..protocol.headers import Headers
from .settings import ApiAccess

__all__ = ["PUBLISH_PATH", "PublishAPI"]

log = logging.getLogger("wsskit.app")

PUBLISH_PATH = "/api/publish"

#: Seconds a client waits before retrying after a backplane failure.
RETRY_AFTER = 5

_FIELDS = frozenset({"channel", "data", "idempotency_key"})


def _json(status: int, document: Any, headers: Headers | None = None) -> Reject:
    fields = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
    if headers is not None:
        fields.update(headers)
    body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
    # A Reject is how the server answers plain HTTP, whatever the status.
    return Reject(status, fields, body)


def _error(status: int, message: str, headers: Headers | None = None) -> Reject:
    return _json(status, {"error": message}, headers)


class PublishAPI:
    """Answers ``POST /api/publish`` for ``hub``, letting in the tokens of ``access``.

    ``origins`` is the server's Origin policy: a request with an ``Origin``
    header it does not allow gets 403 (a request without one is a backend's).
    """

    def __init__(self, hub: Hub, access: ApiAccess, origins: OriginPolicy) -> None:
        self.hub = hub
        self.access = access
        self.origins = origins

    async def __call__(self, request: Request) -> Reject:
        """The HTTP answer to ``request`` (any method) at :data:`PUBLISH_PATH`."""
        if request.is_upgrade:
            return _error(400, "this endpoint speaks plain HTTP, not WebSocket")
        if request.method != "POST":
            return _error(405, "use POST", Headers([("Allow", "POST")]))
        # Browsers send Origin with every cross-site POST: refuse before
        # looking at credentials, so a page elsewhere learns nothing.
        if "Origin" in request.headers:
            try:
                self.origins.check(request)
            except Rejected as exc:
                return _error(403, str(exc))
        try:
            identity = await self.access.chain.authenticate(AuthContext(request))
        except Rejected as exc:
            return _error(exc.status, str(exc), Headers(self.access.chain.rejection_headers(exc)))
        assert identity is not None  # the chain is required: it raises instead
        content_type = (request.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(415, "the body must be JSON (Content-Type: application/json)")
        parsed = _parse(request.body)
        if isinstance(parsed, Reject):
            return parsed
        channel, data, idempotency_key = parsed
        if self.hub.namespaces.get(channel) is None:
            return _error(404, f"no namespace for channel {channel!r}")
        if not self.access.may_publish(identity.subject, namespace_of(channel)):
            return _error(403, f"this token may not publish into namespace {namespace_of(channel)!r}")
        try:
            publication = await self.hub.publish(channel, data, idempotency_key=idempotency_key)
        except ValueError as exc:
            return _error(400, str(exc))
        except BackplaneError as exc:
            log.warning("publish to %s failed: backplane unavailable: %s", channel, exc)
            return _error(
                503, "the backplane is unavailable; retry later", Headers([("Retry-After", str(RETRY_AFTER))])
            )
        log.info("%s published to %s (offset %d)", identity.subject, channel, publication.offset)
        return _json(200, {"channel": channel, "offset": publication.offset, "epoch": publication.epoch})


def _parse(body: bytes) -> tuple[str, Any, str | None] | Reject:
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return _error(400, f"the body is not JSON: {exc}")
    if not isinstance(document, dict):
        return _error(400, "the body must be a JSON object")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        return _error(400, f"unknown field {unknown[0]!r}")
    channel = document.get("channel")
    if not isinstance(channel, str) or not channel:
        return _error(400, "'channel' must be a non-empty string")
    if "data" not in document:
        return _error(400, "'data' is missing")
    key = document.get("idempotency_key")
    if key is not None and not is_idempotency_key(key):
        return _error(400, "'idempotency_key' must be 1 to 128 printable ASCII characters (no space)")
    return channel, document["data"], key


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6); Python's json reads them.
    raise ValueError(f"{name} is not a JSON value")
