"""The broker contract: the small interface every transport implements.

Rules every adapter keeps (the conformance suite in
``tidings.testing.conformance`` checks them):

* ``publish`` returns only once the broker accepted the messages with its
  durability; messages of one key published in sequence are stored in order.
  A publish that cannot complete raises :class:`~tidings.errors.PublishError`
  (or ``ConnectionError``), never drops silently. ``Message.id`` is the event
  id on brokers that declare ``publish_dedup``, which may use it.
* A :class:`Subscription` is one member of a consumer group (or, with
  ``group=None``, a group-less reader that sees every message published while
  it is open, takes nothing from any group and leaves nothing behind once
  closed; a broker may reserve a prefix of group names for such readers).
  Within a group a message is handed to one member at a time; every group
  sees every message. Messages with the same key are handed out in
  publish order, and a message redelivered after a ``nack`` or a lost lease
  comes back before later messages of its key.
* A :class:`Delivery` carries ``id``, the broker's identity of the message: the
  same for every redelivery of it, whatever the broker's positions look like.
  ``position`` is opaque text for records and logs. Core never compares
  positions.
* A delivery is settled by ``ack()`` or ``nack(delay)``. Both are idempotent:
  the first call settles, later calls do nothing. A delivery that is never
  settled before its subscription closes (or its member dies) is delivered
  again, with ``attempt`` one higher. Settling a delivery whose member lost it
  (a revoked partition, an expired lease) is ignored (fenced), never an error.
* When a member loses deliveries it still holds (a rebalance moved their
  partition, a lease expired), the subscription calls ``on_revoke`` with them,
  and with those it nacked that were not redelivered yet (the member waits for
  them). On a planned rebalance this happens before any other member can
  receive them; after an expired lease, as soon as the member learns of it
  (fencing keeps its late settlements harmless meanwhile). Core then forgets
  them: they will be redelivered to whoever owns them now.
* ``Delivery.extend()`` asks the broker to keep an unsettled delivery with this
  member longer (an ack deadline, a lease). Core calls it for long handlings
  and for events held behind their key; brokers without deadlines do nothing.
* ``Subscription.fetch`` is called from one task at a time. ``close`` may be
  called from any task and makes a waiting ``fetch`` return an empty list.
* Everything is called from the event loop the broker was connected on.

Extra abilities are separate protocols (:class:`Seekable`,
:class:`Transactional`, :class:`MultiTopicPublisher`, :class:`Provisioning`,
:class:`WireFormat`, :class:`NativeReplies`, and :class:`Releasable` and
:class:`CountsAttempts` for deliveries),
announced in :class:`Capabilities`. The App reads the capabilities and emulates
or refuses what a broker lacks: see ``docs/brokers.md``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from tidings.codec import Codec

__all__ = [
    "Broker",
    "Capabilities",
    "CountsAttempts",
    "Delivery",
    "Message",
    "MultiTopicPublisher",
    "NativeReplies",
    "Position",
    "Provisioning",
    "Releasable",
    "RevokeHandler",
    "Seekable",
    "StartFrom",
    "SubscribeOptions",
    "Subscription",
    "Transactional",
    "WireFormat",
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
    #: The event id, set for brokers that declare ``publish_dedup`` (they drop a
    #: publish whose id they stored already); None elsewhere, to keep logs lean.
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do beyond the basic contract."""

    persistent: bool = False
    """Messages survive a restart of the process (and of the broker)."""
    ordered_per_key: bool = True
    """Messages of one key are delivered in publish order."""
    consumer_groups: bool = True
    """Competing consumers within a group, fan-out across groups."""
    key_affinity: bool = True
    """Within a group, the messages of one key go to one member at a time
    (partitions, sticky hashing). Without it, members may hold different
    events of one key at once and order across members is not promised."""
    replay: bool = False
    """Groups can be moved with :class:`Seekable` and new groups start at ``earliest``."""
    delayed_publish: bool = False
    """``Message.deliver_at`` is honoured by the broker (else core emulates it)."""
    delayed_redelivery: bool = False
    """``nack(delay)`` is honoured by the broker (else core waits, then nacks)."""
    exactly_once: bool = False
    """Implements :class:`Transactional`."""
    publish_dedup: bool = False
    """A publish repeating a stored ``Message.id`` is dropped (JetStream ``Nats-Msg-Id``,
    SQS FIFO deduplication); the App then sets ``Message.id`` to the event id."""
    headers: bool = True
    """``Message.headers`` survive the trip."""
    wildcards: bool = False
    """Subscriptions may name topics with the broker's wildcards."""
    max_message_size: int | None = None
    """Largest ``value`` the transport accepts, if it has a limit."""


@runtime_checkable
class Delivery(Protocol):
    """One handing of a message to a consumer group member."""

    topic: str
    partition: int
    """The partition (0 on brokers without partitions)."""
    offset: int
    """The offset in its partition (-1 on brokers without offsets)."""
    key: str | None
    value: bytes
    headers: Mapping[str, str]
    group: str
    attempt: int
    """1 for the first handing, counting up with each redelivery."""
    published_at: float
    """Unix time the broker stored the message."""

    @property
    def id(self) -> str:
        """The broker's identity of the message: equal across its redeliveries."""

    @property
    def position(self) -> str:
        """Where the message sits, as opaque text for records and logs."""

    @property
    def settled(self) -> bool: ...

    async def ack(self) -> None:
        """Mark the message handled; it is not delivered to this group again."""

    async def nack(self, delay: float = 0.0) -> None:
        """Give the message back, to be delivered again no sooner than ``delay`` seconds.

        A broker without ``delayed_redelivery`` may redeliver at once; the App
        then waits the delay itself before nacking.
        """

    async def extend(self) -> None:
        """Keep the unsettled message with this member for another ack-wait period."""


#: Called with deliveries a member lost before settling them.
RevokeHandler: TypeAlias = Callable[[Sequence[Delivery]], None]


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """How a member reads; brokers use what applies to them and document the rest."""

    start: StartFrom = "earliest"
    """Where a new group starts (a group-less reader always starts at the end)."""
    prefetch: int = 256
    """Most messages handed out to this member and not yet settled."""
    ack_wait: float = 30.0
    """Seconds an unsettled delivery stays with this member without ``extend``."""
    max_deliveries: int | None = None
    """Where the broker counts deliveries itself: stop redelivering after this many."""
    client_name: str | None = None
    """Who subscribes (an App passes its name): brokers show it in member ids."""

    def __post_init__(self) -> None:
        if self.start not in ("earliest", "latest"):
            raise ValueError(f"start must be 'earliest' or 'latest'; got {self.start!r}")
        if self.prefetch < 1 or self.ack_wait <= 0:
            raise ValueError("prefetch must be >= 1 and ack_wait > 0")
        if self.max_deliveries is not None and self.max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1 (or None)")


class Subscription(Protocol):
    """A member of a consumer group (or a group-less reader), reading one or more topics."""

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` seconds for messages; return at most ``max_count``.

        Returns an empty list on timeout or once the subscription is closed.
        """

    async def close(self) -> None:
        """Leave the group. Unsettled deliveries are delivered again (to any member)."""


class Broker(Protocol):
    """A transport. Found by URL scheme; see :func:`tidings.brokers.from_url`."""

    capabilities: Capabilities

    async def connect(self) -> None:
        """Open connections. Called once before any other method."""

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` in ``topic``, in order; return once accepted."""

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),
        on_revoke: RevokeHandler | None = None,
    ) -> Subscription:
        """Join ``group`` on ``topics`` (``None``: a group-less reader from the end)."""

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
class Provisioning(Protocol):
    """A broker that can create topics (streams, exchanges, queues) with their settings."""

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        retention: float | None = None,
        retention_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        """Create ``name`` if missing, or update its settings.

        ``partitions=None`` keeps an existing topic's count (a new topic gets
        the broker's default); a different count for an existing topic raises.

        ``retention``: seconds to keep messages (None: forever);
        ``retention_bytes``: per partition; ``compact``: keep the newest message
        of each key. A setting the broker cannot honour raises
        :class:`~tidings.errors.ConfigurationError`.
        """


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


@runtime_checkable
class WireFormat(Protocol):
    """A broker whose protocol binding prefers an encoding (e.g. Kafka's binary mode).

    An App given no ``codec`` uses :meth:`default_codec`; without this protocol
    it uses CloudEvents JSON structured mode. Decoding reads both modes anyway.
    """

    def default_codec(self) -> Codec:
        """The codec an App uses on this broker unless it is given one."""


@runtime_checkable
class Releasable(Protocol):
    """A delivery that can be given back unhandled, without counting an attempt.

    The App releases the deliveries it fetched but never handed to a handler
    (waiting behind their key, or not yet started) when it stops or restarts a
    subscription, so a broker that counts attempts durably redelivers them
    with the same ``attempt``. Releasing settles the delivery here.
    """

    async def release(self) -> None:
        """Give the delivery back; it comes again with the same attempt number."""


@runtime_checkable
class CountsAttempts(Protocol):
    """A delivery whose broker records durably that its handling starts.

    The App calls :meth:`begin` right before the handler runs and awaits what
    it returns, if anything. Then a handling that ends with its process
    (killed, crashed) still counts as an attempt, and the App dead-letters an
    event delivered beyond ``max_attempts`` without running it again.
    """

    def begin(self) -> Awaitable[None] | None:
        """The handler is about to run; return an awaitable if a write must finish first."""


@runtime_checkable
class NativeReplies(Protocol):
    """A broker with its own request/reply addresses (NATS inbox subjects).

    Without it, :meth:`tidings.App.request` has replies published to a reply
    topic that the requesting App reads with a group-less subscription.
    """

    async def open_inbox(self, deliver: Callable[[Message], None]) -> str:
        """Start receiving replies, each passed to ``deliver``; return the address.

        The inbox stays open until the broker closes. Replies are not stored:
        one sent while nobody listens is lost (the requester times out).
        """

    async def send_reply(self, address: str, message: Message) -> None:
        """Send ``message`` to an address returned by :meth:`open_inbox` (anywhere)."""
