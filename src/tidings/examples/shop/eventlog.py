"""Reading back what a broker stored: the shop's source of truth.

A service rebuilds its state from its own topic, and the invariant checks
read every topic, through :class:`EventLog`. On a broker that can be
inspected (the embedded one) it reads the stored events directly, joining no
group; on any other it reads them as a throw-away consumer group from the
earliest event, which is caught up when a fetch comes back empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tidings.broker import Broker, Message
from tidings.broker import Subscription as BrokerSubscription
from tidings.codec import Codec
from tidings.deadletter import DLQ_SUFFIX, DeadLetter
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.inspection import Inspectable

__all__ = ["EventLog", "Record"]

_PAGE = 1000
_CAUGHT_UP_WAIT = 0.1


@dataclass(frozen=True)
class Record:
    """One stored event. ``event`` is None when the bytes do not decode."""

    topic: str
    event: Event | None
    dead_letter: DeadLetter | None = None
    """The failure record, for an event read from a ``.dlq`` topic."""


class EventLog:
    """Incremental reader of ``topics``: each :meth:`read_new` returns what is new since."""

    def __init__(self, broker: Broker, topics: Sequence[str], codec: Codec | None = None) -> None:
        self.broker = broker
        self.topics = tuple(topics)
        self.codec = codec or Codec()
        self._next: dict[str, dict[int, int]] = {}
        self._subscription: BrokerSubscription | None = None

    async def read_new(self) -> list[Record]:
        """Every event stored since the last call (all of them, the first time)."""
        if isinstance(self.broker, Inspectable):
            return await self._read_stored(self.broker)
        return await self._read_as_group()

    async def read_all(self) -> list[Record]:
        """Everything stored now, then close (for a one-off rebuild)."""
        try:
            return await self.read_new()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    async def _read_stored(self, broker: Inspectable) -> list[Record]:
        records: list[Record] = []
        for topic in self.topics:
            positions = await self._positions(broker, topic)
            while positions:
                page = await broker.read(topic, after=positions, limit=_PAGE)
                for stored in page:
                    positions[stored.partition] = stored.offset + 1
                    records.append(self._record(topic, stored.message))
                if len(page) < _PAGE:
                    break
        return records

    async def _positions(self, broker: Inspectable, topic: str) -> dict[int, int]:
        positions = self._next.get(topic)
        if positions is None:
            partitions = {t.name: t.partitions for t in await broker.list_topics()}
            if topic not in partitions:
                return {}  # nothing stored yet; look again next time
            positions = self._next[topic] = dict.fromkeys(range(partitions[topic]), 0)
        return positions

    async def _read_as_group(self) -> list[Record]:
        if self._subscription is None:
            group = f"shop-log-reader-{uuid.uuid4().hex[:12]}"
            self._subscription = await self.broker.subscribe(self.topics, group)
        records: list[Record] = []
        while True:
            deliveries = await self._subscription.fetch(_PAGE, _CAUGHT_UP_WAIT)
            if not deliveries:
                return records
            for delivery in deliveries:
                message = Message(delivery.value, delivery.headers, delivery.key)
                records.append(self._record(delivery.topic, message))
                await delivery.ack()

    def _record(self, topic: str, message: Message) -> Record:
        letter: DeadLetter | None = None
        try:
            if topic.endswith(DLQ_SUFFIX):
                letter = DeadLetter.from_message(message)
                return Record(topic, letter.event(self.codec), letter)
            return Record(topic, self.codec.decode(message.value, message.headers))
        except DecodeError:
            return Record(topic, None, letter)
