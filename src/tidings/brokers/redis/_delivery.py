"""A Redis Streams delivery and the partition stream it came from.

Settling goes through the member (:class:`~._subscription.RedisSubscription`):
``ack`` is a fenced ``XACK``; ``nack(delay)`` keeps the entry pending with this
member and claims it again when the delay is over (``XCLAIM`` counts the
delivery, so the attempt survives any restart); ``extend`` resets the entry's
idle time (``XCLAIM ... JUSTID``) so no sweep takes it from a living member;
``release`` sets the entry's delivery counter back (``XCLAIM ... RETRYCOUNT``),
so it comes again with the same attempt. A
delivery is fenced once its source's epoch moved on (its partition went to
another member, the group was moved by a seek, or the member closed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from tidings.brokers._pending import PendingQueue
from tidings.brokers._settle import OffsetDelivery

if TYPE_CHECKING:
    from tidings.brokers.redis._subscription import RedisSubscription

__all__ = ["RedisDelivery", "Source"]


class Source:
    """One partition stream a member reads."""

    __slots__ = (
        "dues",
        "epoch",
        "held",
        "lease",
        "nacked",
        "owned",
        "partition",
        "stale",
        "stream",
        "token",
        "topic",
        "waiting",
        "waiting_entries",
    )

    def __init__(
        self, topic: str, partition: int, stream: str, lease: str = "", dues: str = ""
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.stream = stream
        self.lease = lease
        self.dues = dues
        self.epoch = 0
        self.owned = False
        #: Entries were read into this member's pending list under an older epoch and
        #: dropped here: claim them before handing out newer ones of their keys.
        self.stale = False
        #: The lease's value while owned (the fencing token).
        self.token = ""
        #: Handed to core and not settled, by offset.
        self.held: dict[int, RedisDelivery] = {}
        #: Nacked and not redelivered yet, by offset.
        self.nacked: dict[int, RedisDelivery] = {}
        #: Offsets waiting for their time: retries, and entries held behind a barrier.
        self.waiting = PendingQueue()
        #: Offset -> a delivery to hand out as is, or the stream id to claim again.
        self.waiting_entries: dict[int, RedisDelivery | bytes] = {}

    def fence(self) -> None:
        """Every delivery handed out so far can no longer be settled by this member."""
        self.epoch += 1
        self.held = {}
        self.nacked = {}
        self.waiting.clear()
        self.waiting_entries = {}

    def tracked(self, stream_id: bytes) -> bool:
        """True if this member knows the pending entry ``stream_id`` already."""
        offset = int(stream_id.rpartition(b"-")[2])
        return offset in self.held or offset in self.nacked or offset in self.waiting_entries


class RedisDelivery(OffsetDelivery):
    __slots__ = ("_epoch", "_member", "_source", "stream_id")

    def __init__(
        self,
        member: RedisSubscription,
        source: Source,
        stream_id: bytes,
        offset: int,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str],
        group: str,
        attempt: int,
        published_at: float,
    ) -> None:
        super().__init__()
        self._member = member
        self._source = source
        self._epoch = source.epoch
        self.stream_id = stream_id
        self.topic = source.topic
        self.partition = source.partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.group = group
        self.attempt = attempt
        self.published_at = published_at

    def fenced(self) -> bool:
        return self._epoch != self._source.epoch

    def _on_ack(self) -> None:
        self._member.settle_ack(self._source, self)

    def _on_nack(self, delay: float) -> Awaitable[None] | None:
        return self._member.settle_nack(self._source, self, delay)

    def _on_extend(self) -> Awaitable[None] | None:
        return self._member.keep(self._source, self)

    async def release(self) -> None:
        """Give the delivery back unhandled (:class:`~tidings.broker.Releasable`)."""
        if self.settled:
            return
        self.settled = True
        if not self.fenced():
            await self._member.give_back(self._source, self)
