"""The broker contract: the small interface every transport implements.

Rules every adapter keeps (the conformance suite in
``tidings.testing.conformance`` checks them):

* ``publish`` returns only once the broker accepted the messages with its
  durability; messages of one key published in sequence are stored in order.
  A publish that cannot complete raises :class:`~tidings.errors.PublishError`
  (or ``ConnectionError``), never drops silently.
* A :class:`Subscription` is one member of a consumer group. Within a group a
  message is handed to one member at a time; every group sees every message.
  Messages with the same key are handed out in publish order.
* A :class:`Delivery` is settled by ``ack()`` or ``nack(delay)``. Both are
  idempotent: the first call settles, later calls do nothing. A delivery that
  is never settled before its subscription closes (or its member dies) is
  delivered again, with ``attempt`` one higher. Acking a delivery whose
  member lost its partitions is ignored (fenced), never an error.
* ``Subscription.fetch`` is called from one task at a time. ``close`` may be
  called from any task and makes a waiting ``fetch`` return an empty list.
* Everything is called from the event loop the broker was connected on.

Extra abilities are separate protocols (:class:`Seekable`,
:class:`Transactional`), announced in :class:`Capabilities`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

__all__ = [
    "Broker",
    "Capabilities",
    "Delivery",
    "Message",
    "MultiTopicPublisher",
    "Position",
    "Seekable",
    "StartFrom",
    "Subscription",
    "Transactional",
    "partition_for",
]

StartFrom: TypeAlias = Literal["earliest", "latest"]
#: Where to move a group: "beginning", "end", an offset (every partition), or a time.
Position: TypeAlias = "Literal['beginning', 'end'] | int | datetime"

_EMPTY_HEADERS: Mapping[str, str] = {}


class Message(msgspec.Struct, frozen=True, gc=False):
    """An encoded event as it travels through a broker."""

    value: bytes
    headers: Mapping[str, str] = msgspec.field(default_factory=lambda: _EMPTY_HEADERS)
    key: str | None = None
    #: Unix time (seconds) before which the message must not be delivered.
    deliver_at: float | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do beyond the basic contract."""

    persistent: bool = False
    """Messages survive a restart of the process (and of the broker)."""
    ordered_per_key: bool = True
    """Messages of one key are delivered in publish order."""
    consumer_groups: bool = True
    """Competing consumers within a group, fan-out across groups."""
    replay: bool = False
    """Groups can be moved with :class:`Seekable` and new groups start at ``earliest``."""
    native_delay: bool = False
    """``Message.deliver_at`` and ``nack(delay)`` are scheduled by the broker."""
    exactly_once: bool = False
    """Implements :class:`Transactional`."""
    headers: bool = True
    """``Message.headers`` survive the trip."""
    max_message_size: int | None = None
    """Largest ``value`` the transport accepts, if it has a limit."""


@runtime_checkable
class Delivery(Protocol):
    """One handing of a message to a consumer group member."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: Mapping[str, str]
    group: str
    attempt: int
    """1 for the first handing, counting up with each redelivery."""
    published_at: float
    """Unix time the broker stored the message."""

    @property
    def settled(self) -> bool: ...

    async def ack(self) -> None:
        """Mark the message handled; it is not delivered to this group again."""

    async def nack(self, delay: float = 0.0) -> None:
        """Give the message back, to be delivered again no sooner than ``delay`` seconds."""


class Subscription(Protocol):
    """A member of a consumer group, reading one or more topics."""

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` seconds for messages; return at most ``max_count``.

        Returns an empty list on timeout or once the subscription is closed.
        """

    async def close(self) -> None:
        """Leave the group. Unsettled deliveries are delivered again (to any member)."""


class Broker(Protocol):
    """A transport. Found by URL scheme; see :func:`tidings.brokers.connect`."""

    capabilities: Capabilities

    async def connect(self) -> None:
        """Open connections. Called once before any other method."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` in ``topic``, in order; return once accepted."""

    async def subscribe(
        self, topics: Sequence[str], group: str, *, start: StartFrom = "earliest"
    ) -> Subscription:
        """Join ``group`` on ``topics``. A new group starts at ``start``."""

    async def close(self) -> None:
        """Close every subscription and connection. Idempotent."""


@runtime_checkable
class Seekable(Protocol):
    """A broker whose groups can be moved (replay)."""

    async def seek(self, topic: str, group: str, position: Position) -> None:
        """Make ``group`` read ``topic`` from ``position`` next.

        Handling already done is not undone; messages after the position are
        delivered again as new attempts.
        """


@runtime_checkable
class MultiTopicPublisher(Protocol):
    """A broker that stores messages of several topics in one step."""

    async def publish_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Store every ``(topic, messages)`` batch, all or nothing."""


@runtime_checkable
class Transactional(Protocol):
    """A broker that commits a handling's outputs and its ack atomically."""

    async def is_processed(self, delivery: Delivery, dedup_key: str) -> bool:
        """True if ``dedup_key`` was already committed by ``delivery``'s group."""

    async def commit(
        self,
        delivery: Delivery,
        outputs: Sequence[tuple[str, Message]],
        dedup_key: str | None = None,
    ) -> bool:
        """Publish ``outputs``, record ``dedup_key`` and ack ``delivery``, all or nothing.

        Returns False (publishing nothing, still acking) if ``dedup_key`` was
        already recorded for the group.
        """


def partition_for(key: str | None, partitions: int, fallback: int = 0) -> int:
    """The partition of ``key`` among ``partitions``: a stable hash (CRC-32).

    Keyless messages go to ``fallback % partitions`` (callers rotate it).
    """
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode("utf-8")) % partitions
