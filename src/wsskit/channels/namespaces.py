"""Channel namespaces: history, presence and permissions per channel prefix.

A channel ``chat:lobby`` belongs to the namespace ``chat``; a channel without
``:`` belongs to the default namespace (named ``""``). A permission says who
may do something in a namespace's channels:

- ``"any"``: any connection, authenticated or not;
- ``"authenticated"``: a connection whose ``identity`` is not None;
- ``"nobody"`` (or an empty collection): no connection (the backend still
  publishes with :meth:`Hub.publish <wsskit.channels.hub.Hub.publish>`);
- a collection of subjects: the connections authenticated as one of them;
- ``"token"``: a connection that presents a channel token for this channel
  and its own subject, minted by the backend with :func:`channel_token`;
- a callable ``(identity, channel) -> bool`` or an async one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .backplanes.base import Retention

__all__ = [
    "Permission",
    "PermissionCheck",
    "Namespace",
    "Namespaces",
    "namespace_of",
    "channel_token",
    "verify_channel_token",
    "allowed",
]

PermissionCheck = Callable[[Any, str], Union[bool, Awaitable[bool]]]
#: See the module's docstring.
Permission = Union[str, Collection[str], PermissionCheck]

_KEYWORDS = frozenset({"any", "authenticated", "nobody", "token"})
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _check_permission(permission: object, what: str) -> None:
    if isinstance(permission, str):
        if permission not in _KEYWORDS:
            raise ValueError(
                f"{what} is 'any', 'authenticated', 'nobody', 'token', a collection of subjects "
                f"or a callable, not {permission!r}"
            )
    elif callable(permission):
        return
    elif isinstance(permission, Collection):
        if not all(isinstance(subject, str) and subject for subject in permission):
            raise ValueError(f"{what}: subjects are non-empty strings")
    else:
        raise TypeError(f"{what}: {permission!r} is not a permission")


@dataclass(frozen=True)
class Namespace:
    """The settings of every channel named ``<name>:...``.

    ``history_size`` publications are kept for ``history_ttl`` seconds each
    (0: no history; clients then cannot resume). ``presence`` keeps who is
    subscribed; ``join_leave`` pushes joins and leaves to subscribers (needs
    ``presence``). ``history`` and ``presence_access`` default to
    ``subscribe``. Raises :class:`ValueError` for an invalid setting.
    """

    name: str = ""
    history_size: int = 100
    history_ttl: float = 300.0
    idempotency_window: float = 120.0
    presence: bool = False
    join_leave: bool = False
    subscribe: Permission = "any"
    publish: Permission = "nobody"
    history: Permission | None = None
    presence_access: Permission | None = None

    def __post_init__(self) -> None:
        if self.name and _NAME.fullmatch(self.name) is None:
            raise ValueError("a namespace name is 1 to 64 letters, digits, '_' or '-'")
        if self.join_leave and not self.presence:
            raise ValueError("join_leave needs presence=True")
        if self.history_size < 0:
            raise ValueError("history_size must not be negative")
        if not (self.history_ttl > 0 and math.isfinite(self.history_ttl)):
            raise ValueError("history_ttl must be a positive number of seconds")
        for what in ("subscribe", "publish", "history", "presence_access"):
            value = getattr(self, what)
            if value is not None:
                _check_permission(value, what)
        self.retention  # noqa: B018 - validates idempotency_window

    @property
    def retention(self) -> Retention:
        """The :class:`~wsskit.channels.backplanes.base.Retention` of this namespace's channels."""
        return Retention(self.history_size, self.history_ttl, self.idempotency_window)

    @property
    def history_permission(self) -> Permission:
        return self.subscribe if self.history is None else self.history

    @property
    def presence_permission(self) -> Permission:
        return self.subscribe if self.presence_access is None else self.presence_access

    def uses_tokens(self) -> bool:
        """Whether any permission of this namespace is ``"token"``."""
        return "token" in (self.subscribe, self.publish, self.history, self.presence_access)


def namespace_of(channel: str) -> str:
    """The namespace name of ``channel``: what precedes its first ``:``, or ``""``."""
    name, sep, _ = channel.partition(":")
    return name if sep else ""


class Namespaces:
    """The namespaces of a hub, looked up by channel.

    Without a default namespace (name ``""``) among ``namespaces``, channels
    without a prefix get ``Namespace()``; pass ``default=None`` to refuse them.
    Raises :class:`ValueError` for two namespaces with one name.
    """

    def __init__(
        self, namespaces: Iterable[Namespace] = (), *, default: Namespace | None = Namespace()
    ) -> None:
        table: dict[str, Namespace] = {}
        for namespace in namespaces:
            if namespace.name in table:
                raise ValueError(f"two namespaces named {namespace.name!r}")
            table[namespace.name] = namespace
        if "" not in table and default is not None:
            table[""] = default
        self._table: Mapping[str, Namespace] = table

    def __iter__(self) -> Any:
        return iter(self._table.values())

    def get(self, channel: str) -> Namespace | None:
        """The namespace of ``channel``, or None when there is none."""
        return self._table.get(namespace_of(channel))


# -- channel tokens -------------------------------------------------------------


def _mac(key: bytes, subject: str, channel: str, expires: int) -> str:
    message = f"wsskit.channel.v1\n{subject}\n{channel}\n{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def channel_token(
    key: bytes, channel: str, subject: str | None, *, ttl: float = 3600.0, now: float | None = None
) -> str:
    """Mint a token that lets ``subject`` (None: an anonymous connection) use ``channel``.

    The token is ``<expiry>.<HMAC-SHA256>`` of the subject, the channel and the
    expiry (seconds since the epoch, ``ttl`` from ``now``). ``key`` must be at
    least 32 bytes; raises :class:`ValueError` otherwise.
    """
    if len(key) < 32:
        raise ValueError("a channel token key is at least 32 bytes")
    expires = int((time.time() if now is None else now) + ttl)
    return f"{expires}.{_mac(key, subject or '', channel, expires)}"


def verify_channel_token(
    key: bytes, token: str, channel: str, subject: str | None, *, now: float | None = None
) -> bool:
    """Whether ``token`` was minted with ``key`` for ``channel`` and ``subject`` and has not expired."""
    expiry, dot, mac = token.partition(".")
    if not dot or not expiry.isdigit() or len(expiry) > 12:
        return False
    expires = int(expiry)
    if expires <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, subject or "", channel, expires).encode())


def _subject(identity: Any) -> str | None:
    subject = getattr(identity, "subject", None)
    return subject if isinstance(subject, str) else None


async def allowed(
    permission: Permission,
    identity: Any,
    channel: str,
    *,
    token: str | None = None,
    token_key: bytes | None = None,
) -> bool:
    """Whether a connection with ``identity`` (and ``token``) may act on ``channel``."""
    if isinstance(permission, str):
        if permission == "any":
            return True
        if permission == "authenticated":
            return identity is not None
        if permission == "token":
            if token is None or token_key is None:
                return False
            return verify_channel_token(token_key, token, channel, _subject(identity))
        return False  # "nobody"
    if callable(permission):
        result = permission(identity, channel)
        if inspect.isawaitable(result):
            result = await result
        return result is True
    subject = _subject(identity)
    return identity is not None and subject is not None and subject in permission
