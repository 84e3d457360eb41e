"""One assigned partition in a member: deliveries out, the settled prefix, local redeliveries.

A nack keeps the record in the member: it waits in a :class:`PendingQueue`
for its delay and holds back later records of its key (a barrier) while
other keys flow. The committed offset never passes an unsettled record
(:class:`Watermark`), so whoever owns the partition after a crash or a
rebalance reads it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tidings.brokers._pending import PendingQueue
from tidings.brokers._settle import OffsetDelivery
from tidings.brokers._watermark import Watermark
from tidings.brokers.kafka._binding import message_headers, message_key

__all__ = ["KafkaDelivery", "Partition"]


class Partition:
    __slots__ = (
        "committed",
        "fetched",
        "group",
        "handed",
        "index",
        "inflight",
        "lost",
        "mark",
        "nacked",
        "pending",
        "seen_until",
        "topic",
        "waiting",
        "wake",
    )

    def __init__(
        self, topic: str, index: int, group: str, seen_until: int, wake: Callable[[float], None]
    ) -> None:
        self.topic = topic
        self.index = index
        self.group = group
        #: Offsets below were handed out before this member got the partition.
        self.seen_until = seen_until
        #: Offsets below are recorded as handed out (the durable mark).
        self.handed = seen_until
        self.wake = wake
        #: Started at the first record read (the group's position then).
        self.mark: Watermark | None = None
        self.committed = -1
        self.fetched = -1
        self.inflight: dict[int, KafkaDelivery] = {}
        self.pending = PendingQueue()
        #: Offsets in ``pending``: nacked deliveries and records held behind their key.
        self.waiting: dict[int, KafkaDelivery] = {}
        self.nacked: dict[int, KafkaDelivery] = {}
        self.lost = False

    def admit(self, record: Any) -> KafkaDelivery | None:
        """A record read from Kafka: a delivery to hand out, or None if held behind its key."""
        offset = record.offset
        if self.mark is None or offset < self.fetched:
            # First record, or the log went back (an offset reset: the server lost
            # or truncated the partition): settle from here.
            self.mark = Watermark(offset)
            if offset < self.fetched:
                self.committed = -1
                self.seen_until = self.handed = 0
        self.fetched = offset + 1
        key = message_key(record.key)
        delivery = KafkaDelivery(
            self,
            offset,
            key,
            record.value or b"",
            message_headers(record.headers),
            record.timestamp / 1000.0,
            2 if offset < self.seen_until else 1,
        )
        pending = self.pending
        if pending.barriers and key is not None:
            due = pending.barrier(key, offset)
            if due is not None:
                pending.push(due, offset)
                pending.add_barrier(key, due, offset)
                self.waiting[offset] = delivery
                return None
        self.inflight[offset] = delivery
        return delivery

    def take_due(self, now: float, limit: int, out: list[KafkaDelivery]) -> None:
        pending = self.pending
        for offset in pending.pop_due(now, limit):
            delivery = self.waiting.pop(offset)
            self.nacked.pop(offset, None)
            pending.delivered(delivery.key, offset)
            if delivery.settled:
                delivery = delivery.again()
            self.inflight[offset] = delivery
            out.append(delivery)

    def ack(self, offset: int) -> None:
        del self.inflight[offset]
        mark = self.mark
        if mark is not None:
            mark.settle(offset)

    def nack(self, delivery: KafkaDelivery, delay: float) -> None:
        offset = delivery.offset
        del self.inflight[offset]
        due = time.time() + delay
        self.pending.push(due, offset)
        if delivery.key is not None:
            self.pending.add_barrier(delivery.key, due, offset)
        self.waiting[offset] = delivery
        self.nacked[offset] = delivery
        self.wake(due)

    def lose(self) -> list[KafkaDelivery]:
        """The member lost the partition: fence everything; return what it still held."""
        self.lost = True
        held = sorted(self.inflight.values(), key=lambda d: d.offset)
        for delivery in held:
            delivery.settled = True
        held.extend(self.nacked.values())
        self.inflight.clear()
        self.nacked.clear()
        self.waiting.clear()
        self.pending.clear()
        return held


class KafkaDelivery(OffsetDelivery):
    __slots__ = ("_part",)

    def __init__(
        self,
        part: Partition,
        offset: int,
        key: str | None,
        value: bytes,
        headers: Any,
        published_at: float,
        attempt: int,
    ) -> None:
        self._part = part
        self.topic = part.topic
        self.partition = part.index
        self.group = part.group
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.published_at = published_at
        self.attempt = attempt
        self.settled = False

    def again(self) -> KafkaDelivery:
        """The next handing of this record (after a nack)."""
        return KafkaDelivery(
            self._part,
            self.offset,
            self.key,
            self.value,
            self.headers,
            self.published_at,
            self.attempt + 1,
        )

    def fenced(self) -> bool:
        part = self._part
        return part.lost or part.inflight.get(self.offset) is not self

    def _on_ack(self) -> None:
        self._part.ack(self.offset)

    def _on_nack(self, delay: float) -> None:
        self._part.nack(self, delay)

    def __repr__(self) -> str:
        return (
            f"<KafkaDelivery {self.topic}[{self.partition}]@{self.offset} "
            f"group={self.group} attempt={self.attempt}>"
        )
