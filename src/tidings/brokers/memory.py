"""The in-memory broker (``memory://``): every semantic of a log broker in one process.

Topics are split into partitions (the key picks one by stable hash); consumer
groups read them with per-partition cursors, committed offsets, redelivery of
nacked and abandoned messages, delayed delivery, seek and an atomic commit for
exactly-once. Nothing survives the process.

Brokers opened with the same URL name (``memory://``, ``memory://shop``) share
one :class:`MemoryHub`, like clients of one server; closing a broker closes
only its own subscriptions. Use it from one event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import msgspec

from tidings.broker import Capabilities, Delivery, Message, Position, StartFrom, partition_for
from tidings.brokers import redact_url
from tidings.brokers._waiting import wait_until
from tidings.errors import BrokerClosedError, ConfigurationError

__all__ = ["MemoryBroker", "MemoryHub"]

CAPABILITIES = Capabilities(
    persistent=False,
    ordered_per_key=True,
    consumer_groups=True,
    replay=True,
    native_delay=True,
    exactly_once=True,
    headers=True,
)


class _Record(msgspec.Struct, gc=False):
    # Not tracked by the cycle collector: a long log would otherwise be walked
    # by every full collection.
    offset: int
    message: Message
    published_at: float


@dataclass(slots=True)
class _Topic:
    name: str
    partitions: list[list[_Record]]
    next_keyless: int = 0
    #: The group states reading this topic: an append wakes only their members.
    readers: list[_GroupTopic] = field(default_factory=list)


class _GroupTopic:
    """The state of one consumer group on one topic."""

    __slots__ = (
        "acked",
        "attempts",
        "committed",
        "cursor",
        "inflight",
        "members",
        "owner",
        "pending",
        "topic",
    )

    def __init__(self, topic: _Topic, start: StartFrom) -> None:
        self.topic = topic
        n = len(topic.partitions)
        ends = [len(p) for p in topic.partitions] if start == "latest" else [0] * n
        self.cursor = list(ends)
        self.committed = list(ends)
        self.acked: list[set[int]] = [set() for _ in range(n)]
        self.pending: list[list[tuple[float, int]]] = [[] for _ in range(n)]
        self.inflight: list[dict[int, _MemoryDelivery]] = [{} for _ in range(n)]
        self.attempts: list[dict[int, int]] = [{} for _ in range(n)]
        self.members: list[_MemorySubscription] = []
        self.owner: list[_MemorySubscription | None] = [None] * n

    def rebalance(self) -> None:
        members = self.members
        for p in range(len(self.owner)):
            self.owner[p] = members[p % len(members)] if members else None
        for member in members:
            member.wake()

    def settle(self, partition: int, offset: int) -> None:
        self.inflight[partition].pop(offset, None)
        self.attempts[partition].pop(offset, None)
        committed = self.committed[partition]
        if offset == committed:
            acked = self.acked[partition]
            committed += 1
            while committed in acked:
                acked.discard(committed)
                committed += 1
            self.committed[partition] = committed
        elif offset > committed:
            self.acked[partition].add(offset)

    def backlog(self) -> int:
        """Messages not yet settled by this group (including delayed ones)."""
        total = 0
        for p, records in enumerate(self.topic.partitions):
            total += len(records) - self.committed[p] - len(self.acked[p])
        return total


class _MemoryDelivery:
    __slots__ = (
        "_state",
        "attempt",
        "group",
        "headers",
        "key",
        "member",
        "offset",
        "partition",
        "published_at",
        "settled",
        "topic",
        "value",
    )

    def __init__(
        self,
        member: _MemorySubscription,
        state: _GroupTopic,
        partition: int,
        record: _Record,
        attempt: int,
    ) -> None:
        message = record.message
        self.member = member
        self._state = state
        self.topic = state.topic.name
        self.partition = partition
        self.offset = record.offset
        self.key = message.key
        self.value = message.value
        self.headers = message.headers
        self.group = member.group
        self.attempt = attempt
        self.published_at = record.published_at
        self.settled = False

    def _fenced(self) -> bool:
        return (
            self.member.closed or self._state.inflight[self.partition].get(self.offset) is not self
        )

    async def ack(self) -> None:
        self.ack_now()

    def ack_now(self) -> None:
        if self.settled:
            return
        self.settled = True
        if not self._fenced():
            self._state.settle(self.partition, self.offset)

    async def nack(self, delay: float = 0.0) -> None:
        if self.settled:
            return
        self.settled = True
        if self._fenced():
            return
        state = self._state
        del state.inflight[self.partition][self.offset]
        state.attempts[self.partition][self.offset] = self.attempt
        due = time.time() + max(delay, 0.0)
        heapq.heappush(state.pending[self.partition], (due, self.offset))
        owner = state.owner[self.partition]
        if owner is not None:
            owner.wake(due)

    def __repr__(self) -> str:
        return (
            f"<MemoryDelivery {self.topic}[{self.partition}]@{self.offset} "
            f"group={self.group} attempt={self.attempt}>"
        )


class _MemorySubscription:
    def __init__(self, hub: MemoryHub, group: str, states: list[_GroupTopic]) -> None:
        self.hub = hub
        self.group = group
        self.states = states
        self.closed = False
        self._event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._rotation = 0

    def wake(self, due: float | None = None) -> None:
        if due is None or due <= time.time():
            self._event.set()
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + (due - time.time())
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._event.set()

    def _collect(self, max_count: int) -> tuple[list[_MemoryDelivery], float | None]:
        out: list[_MemoryDelivery] = []
        now = time.time()
        next_due: float | None = None
        owned = [
            (state, p)
            for state in self.states
            for p, owner in enumerate(state.owner)
            if owner is self
        ]
        if not owned:
            return out, None
        self._rotation = (self._rotation + 1) % len(owned)
        owned = owned[self._rotation :] + owned[: self._rotation]
        for state, p in owned:
            pending = state.pending[p]
            records = state.topic.partitions[p]
            while pending and len(out) < max_count:
                due, offset = pending[0]
                if due > now:
                    break
                heapq.heappop(pending)
                out.append(self._deliver(state, p, records[offset]))
            if pending:
                due = pending[0][0]
                next_due = due if next_due is None else min(next_due, due)
            cursor = state.cursor[p]
            end = len(records)
            while cursor < end and len(out) < max_count:
                record = records[cursor]
                cursor += 1
                deliver_at = record.message.deliver_at
                if deliver_at is not None and deliver_at > now:
                    heapq.heappush(pending, (deliver_at, record.offset))
                    next_due = deliver_at if next_due is None else min(next_due, deliver_at)
                    continue
                out.append(self._deliver(state, p, record))
            state.cursor[p] = cursor
            if len(out) >= max_count:
                break
        return out, next_due

    def _deliver(self, state: _GroupTopic, p: int, record: _Record) -> _MemoryDelivery:
        # Only redelivered offsets have a count stored (by nack or by a member leaving).
        attempt = state.attempts[p].get(record.offset, 0) + 1
        delivery = _MemoryDelivery(self, state, p, record, attempt)
        state.inflight[p][record.offset] = delivery
        return delivery

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        if max_count < 1:
            raise ConfigurationError("fetch max_count must be >= 1")
        deadline = time.monotonic() + timeout
        while not self.closed:
            self._event.clear()
            out, next_due = self._collect(max_count)
            if out:
                return out
            if next_due is not None:
                self.wake(next_due)
            if not await wait_until(self._event, deadline):
                return []
        return []

    async def close(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        """Leave the group at once: unsettled deliveries go back for redelivery."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._event.set()
        now = time.time()
        for state in self.states:
            for p, inflight in enumerate(state.inflight):
                for offset, delivery in list(inflight.items()):
                    if delivery.member is self:
                        del inflight[offset]
                        state.attempts[p][offset] = delivery.attempt
                        heapq.heappush(state.pending[p], (now, offset))
            state.members.remove(self)
            state.rebalance()
        self.hub._subscriptions.discard(self)


@dataclass
class MemoryHub:
    """The shared state behind ``memory://NAME`` brokers: topics and group positions."""

    default_partitions: int = 4
    topics: dict[str, _Topic] = field(default_factory=dict)
    groups: dict[tuple[str, str], _GroupTopic] = field(default_factory=dict)
    processed: dict[str, set[str]] = field(default_factory=dict)
    _subscriptions: set[_MemorySubscription] = field(default_factory=set)

    def topic(self, name: str, partitions: int | None = None) -> _Topic:
        found = self.topics.get(name)
        if found is None:
            n = partitions or self.default_partitions
            found = _Topic(name, [[] for _ in range(n)])
            self.topics[name] = found
        return found

    def append(self, topic_name: str, messages: Sequence[Message]) -> None:
        topic = self.topic(topic_name)
        n = len(topic.partitions)
        now = time.time()
        partitions = topic.partitions
        for message in messages:
            key = message.key
            if key is None:
                p = topic.next_keyless % n
                topic.next_keyless += 1
            else:
                p = partition_for(key, n)
            records = partitions[p]
            records.append(_Record(len(records), message, now))
        for state in topic.readers:
            for member in state.members:
                member.wake()

    def group_topic(self, group: str, topic: str, start: StartFrom) -> _GroupTopic:
        state = self.groups.get((group, topic))
        if state is None:
            state = _GroupTopic(self.topic(topic), start)
            self.groups[(group, topic)] = state
            state.topic.readers.append(state)
        return state

    def is_idle(self) -> bool:
        """True when every group with a live member has settled everything it can see."""
        return all(not (state.members and state.backlog()) for state in self.groups.values())

    def records(self, topic: str) -> list[tuple[int, int, Message]]:
        """Every stored message of ``topic`` as ``(partition, offset, message)``."""
        found = self.topics.get(topic)
        if found is None:
            return []
        return [
            (p, record.offset, record.message)
            for p, records in enumerate(found.partitions)
            for record in records
        ]


_hubs: dict[str, MemoryHub] = {}


class MemoryBroker:
    """A client of a :class:`MemoryHub`. ``MemoryBroker()`` gets a private hub."""

    capabilities = CAPABILITIES

    def __init__(self, hub: MemoryHub | None = None, *, partitions: int = 4) -> None:
        if partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        self.hub = hub if hub is not None else MemoryHub(default_partitions=partitions)
        self._subscriptions: list[_MemorySubscription] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> MemoryBroker:
        """``memory://[NAME][?partitions=N]``: brokers of one NAME share a hub."""
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise ConfigurationError(f"not a memory:// URL: {redact_url(url)!r}")
        name = (parts.netloc + parts.path).strip("/")
        query = parse_qs(parts.query)
        partitions = 4
        if "partitions" in query:
            try:
                partitions = int(query["partitions"][0])
            except ValueError:
                raise ConfigurationError(
                    f"partitions must be an integer in {redact_url(url)!r}"
                ) from None
            if partitions < 1:
                raise ConfigurationError(f"partitions must be >= 1 in {redact_url(url)!r}")
        hub = _hubs.get(name)
        if hub is None:
            hub = _hubs[name] = MemoryHub(default_partitions=partitions)
        return cls(hub)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError("memory broker is closed")

    async def connect(self) -> None:
        self._check_open()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self._check_open()
        self.hub.append(topic, messages)

    async def publish_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        self._check_open()
        for topic, messages in batches:  # one step: nothing else runs in between
            self.hub.append(topic, messages)

    async def subscribe(
        self, topics: Sequence[str], group: str, *, start: StartFrom = "earliest"
    ) -> _MemorySubscription:
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        states = [self.hub.group_topic(group, t, start) for t in topics]
        subscription = _MemorySubscription(self.hub, group, states)
        for state in states:
            state.members.append(subscription)
            state.rebalance()
        self._subscriptions.append(subscription)
        self.hub._subscriptions.add(subscription)
        return subscription

    async def seek(self, topic: str, group: str, position: Position) -> None:
        self._check_open()
        state = self.hub.group_topic(group, topic, "earliest")
        for p, records in enumerate(state.topic.partitions):
            if position == "beginning":
                target = 0
            elif position == "end":
                target = len(records)
            elif isinstance(position, datetime):
                when = position.timestamp()
                target = next((r.offset for r in records if r.published_at >= when), len(records))
            elif isinstance(position, int) and not isinstance(position, bool):
                target = min(max(position, 0), len(records))
            else:
                raise ConfigurationError(f"cannot seek to {position!r}")
            for delivery in state.inflight[p].values():
                delivery.settled = True
            state.inflight[p].clear()
            state.pending[p].clear()
            state.acked[p].clear()
            state.attempts[p].clear()
            state.cursor[p] = target
            state.committed[p] = target
        for member in state.members:
            member.wake()

    async def is_processed(self, delivery: Delivery, dedup_key: str) -> bool:
        return dedup_key in self.hub.processed.get(delivery.group, ())

    async def commit(
        self,
        delivery: Delivery,
        outputs: Sequence[tuple[str, Message]],
        dedup_key: str | None = None,
    ) -> bool:
        self._check_open()
        if not isinstance(delivery, _MemoryDelivery):
            raise ConfigurationError("commit needs a delivery from this broker")
        if delivery._fenced() or delivery.settled:
            return False
        seen = self.hub.processed.setdefault(delivery.group, set())
        fresh = dedup_key is None or dedup_key not in seen
        if fresh:
            by_topic: dict[str, list[Message]] = {}
            for topic, message in outputs:
                by_topic.setdefault(topic, []).append(message)
            for topic, messages in by_topic.items():
                self.hub.append(topic, messages)
            if dedup_key is not None:
                seen.add(dedup_key)
        delivery.ack_now()
        return fresh

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            subscription.abandon()
        self._subscriptions.clear()
