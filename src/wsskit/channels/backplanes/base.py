"""What every backplane implements: :class:`Backplane`, and the values it deals in.

A backplane is the broker between the nodes of a deployment. It gives each
channel a *stream*: publications numbered by ``offset`` (1, 2, 3... with no
gaps) within an ``epoch``, a random string that names one life of the stream
and changes whenever its history is lost. It keeps a bounded history of each
stream, delivers publications live to every node subscribed to the channel, and
keeps presence (who is subscribed where).

The contract, checked by :mod:`wsskit.testing.backplane` for every
implementation:

- :meth:`Backplane.publish` assigns the next offset and appends to the history
  atomically; two publishers never get the same offset, and live delivery on
  each node follows offset order.
- :meth:`Backplane.history` with ``since`` returns every retained publication
  after ``since.offset``, in order, with ``recovered=True``, or
  ``recovered=False`` when the epoch differs or publications after
  ``since.offset`` are no longer retained. It never returns a gap.
- A subscription is in force when :meth:`Backplane.subscribe` returns: a
  publication made after that is delivered to the callback.
- A node cut off from the broker reconnects by itself. It then delivers what
  each subscribed channel missed, in order, from the history; when it cannot
  prove that nothing was missed (the broker lost the history, or it no longer
  holds the missed publications), it delivers a :class:`Reset` to the
  channel's callbacks instead, before any later publication. Never a silent gap.
- :attr:`Backplane.ready` says, without a round trip, whether the node is
  connected and usable; operations while it is not raise.
- Failures of the broker raise :class:`~wsskit.exceptions.BackplaneError`.

Implementations, chosen by :func:`backplane_from_url`: ``memory://``
(:mod:`.memory`), ``redis://`` (:mod:`.redis`) and ``nats://`` (:mod:`.nats`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Union
from urllib.parse import urlsplit

__all__ = [
    "StreamPosition",
    "Publication",
    "ClientInfo",
    "Join",
    "Leave",
    "Reset",
    "Delivery",
    "DeliveryCallback",
    "HistoryResult",
    "Retention",
    "DEFAULT_RETENTION",
    "Backplane",
    "backplane_from_url",
]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's stream: the offset of the last publication and the epoch.

    Offset 0 is the position before the first publication.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication in a channel's stream; ``data`` is any JSON value."""

    offset: int
    epoch: str
    data: Any


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A subscriber in presence: the connection's id and the user (subject), if known."""

    client: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """A client subscribed to a channel with join/leave announcements."""

    info: ClientInfo


@dataclass(frozen=True, slots=True)
class Leave:
    """A client left a channel with join/leave announcements."""

    info: ClientInfo


@dataclass(frozen=True, slots=True)
class Reset:
    """The node cannot vouch that it delivered every publication of the channel.

    Delivered when a node that was cut off from the broker comes back and
    cannot prove continuity from the last publication it delivered (or from
    where the subscription started): the broker lost the history (restarted
    without persistence, stream recreated), or the history no longer holds
    what the node missed. Publications may have been missed; what comes next
    may start a new epoch. ``position`` is the stream's position when the node
    looked, when it could read it.
    """

    position: StreamPosition | None = None


#: What a live subscription receives.
Delivery = Union[Publication, Join, Leave, Reset]

#: ``callback(channel, delivery)``: called for each delivery, in order. It must
#: not block nor raise; the backplane logs what it raises and goes on.
DeliveryCallback = Callable[[str, Delivery], None]


class HistoryResult(NamedTuple):
    """What :meth:`Backplane.history` returns: ``(publications, position, recovered)``.

    ``position`` is the stream's position when the history was read: the
    offset of its last publication (whether or not ``limit`` cut the list
    short) and its epoch.
    """

    publications: Sequence[Publication]
    position: StreamPosition
    recovered: bool


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a channel keeps its history, from its namespace.

    ``size``: the most publications kept (0 keeps none, though offsets still
    count up). ``ttl``: seconds a publication is kept; a stream with no
    publication for ``ttl`` seconds is forgotten, so its next publication
    starts a new epoch at offset 1. ``idempotency_window``: seconds during
    which a publish with the same idempotency key returns the first
    publication instead of storing a new one.
    """

    size: int = 100
    ttl: float = 300.0
    idempotency_window: float = 120.0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("history size must not be negative")
        if not (self.ttl > 0 and math.isfinite(self.ttl)):
            raise ValueError("history ttl must be a positive number of seconds")
        if not (self.idempotency_window >= 0 and math.isfinite(self.idempotency_window)):
            raise ValueError("idempotency_window must be a non-negative number of seconds")


#: The retention of a publish that names none.
DEFAULT_RETENTION: Final = Retention()


class Backplane(abc.ABC):
    """The interface between the hub and a broker. Every method may raise
    :class:`~wsskit.exceptions.BackplaneError` when the broker fails."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to the broker. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Drop every subscription and disconnect. Idempotent."""

    @property
    def ready(self) -> bool:
        """True while the backplane is started, connected and usable; False otherwise.

        A cheap check (no round trip to the broker) for readiness probes. The
        default says True; a backplane that can tell better overrides it.
        """
        return True

    @abc.abstractmethod
    async def health(self) -> None:
        """Return when the broker answers; raise :class:`~wsskit.exceptions.BackplaneError` when not."""

    @abc.abstractmethod
    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Publication:
        """Append ``data`` to ``channel``'s stream and deliver it to every subscribed node.

        Returns the publication with its offset and epoch. When a publication
        with the same ``idempotency_key`` was made in this channel within
        ``retention.idempotency_window`` seconds, returns that one and neither
        stores nor delivers anything.
        """

    @abc.abstractmethod
    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None
    ) -> HistoryResult:
        """Read ``channel``'s retained history and position.

        Without ``since``: the last ``limit`` retained publications (all of
        them when None), oldest first; ``recovered`` is True. With ``since``:
        the publications after ``since.offset`` (the first ``limit`` of them),
        oldest first, and ``recovered=True`` when the epoch matches and none
        after ``since.offset`` was dropped; otherwise no publications and
        ``recovered=False``. A channel never published to has a position at
        offset 0 and an epoch of its own.
        """

    @abc.abstractmethod
    async def subscribe(self, channel: str, callback: DeliveryCallback) -> None:
        """Deliver ``channel``'s publications, joins and leaves to ``callback``, from now on.

        In force when this returns. Subscribing the same callback twice to a
        channel is the same as once.
        """

    @abc.abstractmethod
    async def unsubscribe(self, channel: str, callback: DeliveryCallback) -> None:
        """Stop delivering ``channel`` to ``callback`` (nothing if it was not subscribed)."""

    @abc.abstractmethod
    async def presence_add(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        """Record ``info`` as present in ``channel``; deliver a :class:`Join` when ``announce``."""

    @abc.abstractmethod
    async def presence_remove(self, channel: str, info: ClientInfo, *, announce: bool = False) -> None:
        """Remove ``info`` from ``channel``'s presence; deliver a :class:`Leave` when ``announce``."""

    @abc.abstractmethod
    async def presence(self, channel: str) -> Sequence[ClientInfo]:
        """Who is present in ``channel``, across every node, sorted by client id."""


def backplane_from_url(url: str) -> Backplane:
    """Make the backplane ``url`` names: ``memory://``, ``redis://`` /
    ``rediss://`` (needs the ``redis`` extra) or ``nats://`` / ``tls://``
    (needs the ``nats`` extra).

    Raises :class:`ValueError` for a scheme wsskit does not know.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryBackplane

        return MemoryBackplane()
    if scheme in {"redis", "rediss"}:
        from .redis import RedisBackplane

        return RedisBackplane(url)
    if scheme in {"nats", "tls"}:
        from .nats import NatsBackplane

        return NatsBackplane(url)
    raise ValueError(f"unknown backplane URL {url!r}: use memory://, redis:// or nats://")
