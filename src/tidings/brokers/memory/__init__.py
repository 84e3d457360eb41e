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

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from tidings.broker import (
    Capabilities,
    Delivery,
    Message,
    Position,
    RevokeHandler,
    StartFrom,
    SubscribeOptions,
)
from tidings.brokers import redact_url
from tidings.brokers.memory import _admin
from tidings.brokers.memory._group import MemoryDelivery, MemorySubscription
from tidings.brokers.memory._hub import MemoryHub, hubs
from tidings.errors import BrokerClosedError, ConfigurationError
from tidings.inspection import GroupInfo, StoredMessage, TopicInfo
from tidings.schemas.registry import MemoryStore
from tidings.webhooks.registry import MemoryWebhookStore

__all__ = ["MemoryBroker", "MemoryHub"]

CAPABILITIES = Capabilities(
    persistent=False,
    ordered_per_key=True,
    consumer_groups=True,
    key_affinity=True,
    replay=True,
    delayed_publish=True,
    delayed_redelivery=True,
    exactly_once=True,
    headers=True,
)
#: ``memory://?delay=none``: a broker that schedules nothing (like Redis Streams or
#: Kafka), so the App's delay emulation can be run and tested without a network.
UNSCHEDULED = replace(CAPABILITIES, delayed_publish=False, delayed_redelivery=False)


class MemoryBroker:
    """A client of a :class:`MemoryHub`. ``MemoryBroker()`` gets a private hub.

    ``scheduled=False`` (URL ``?delay=none``) makes a broker that schedules
    nothing: ``deliver_at`` and ``nack(delay)`` are delivered at once, as on a
    broker without timers, and the App emulates delays in front of it.
    """

    def __init__(
        self, hub: MemoryHub | None = None, *, partitions: int = 4, scheduled: bool = True
    ) -> None:
        if partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        self.hub = hub if hub is not None else MemoryHub(default_partitions=partitions)
        self.scheduled = scheduled
        self.capabilities = CAPABILITIES if scheduled else UNSCHEDULED
        self._subscriptions: list[MemorySubscription] = []
        self._closed = False

    def schema_store(self) -> MemoryStore:
        """The schema registry's storage: the hub's, shared by its brokers, in this process."""
        return self.hub.schemas

    def webhook_store(self) -> MemoryWebhookStore:
        """Webhook registrations: the hub's, shared by its brokers, in this process."""
        return self.hub.webhooks

    @classmethod
    def from_url(cls, url: str) -> MemoryBroker:
        """``memory://[NAME][?partitions=N][&delay=none]``: brokers of one NAME share a hub."""
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise ConfigurationError(f"not a memory:// URL: {redact_url(url)!r}")
        name = (parts.netloc + parts.path).strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"partitions", "delay"}
        if unknown:
            raise ConfigurationError(f"unknown memory URL option(s): {', '.join(sorted(unknown))}")
        try:
            partitions = int(query.get("partitions", 4))
        except ValueError:
            raise ConfigurationError(
                f"partitions must be an integer in {redact_url(url)!r}"
            ) from None
        if partitions < 1:
            raise ConfigurationError(f"partitions must be >= 1 in {redact_url(url)!r}")
        delay = query.get("delay", "native")
        if delay not in ("native", "none"):
            raise ConfigurationError(f"delay must be 'native' or 'none' in {redact_url(url)!r}")
        hub = hubs.get(name)
        if hub is None:
            hub = hubs[name] = MemoryHub(default_partitions=partitions)
        return cls(hub, scheduled=delay == "native")

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

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        retention: float | None = None,
        retention_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        """Create ``name`` with ``partitions``; memory:// keeps every message (no retention)."""
        self._check_open()
        if retention is not None or retention_bytes is not None or compact:
            raise ConfigurationError(
                "memory:// keeps every message until the process ends: retention and "
                "compaction are not available (use the embedded broker, sqlite://)"
            )
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        existing = self.hub.topics.get(name)
        if existing is not None and partitions is not None:
            if len(existing.partitions) != partitions:
                raise ConfigurationError(
                    f"topic {name!r} has {len(existing.partitions)} partitions; "
                    "the count is fixed when a topic is created"
                )
            return
        self.hub.topic(name, partitions)

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str | None,
        options: SubscribeOptions = SubscribeOptions(),  # noqa: B008 - frozen
        on_revoke: RevokeHandler | None = None,
    ) -> MemorySubscription:
        self._check_open()
        if not topics:
            raise ConfigurationError("subscribe needs at least one topic")
        ephemeral = group is None
        name = f"~reader-{uuid.uuid4().hex[:12]}" if group is None else group
        start: StartFrom = "latest" if ephemeral else options.start
        states = [self.hub.group_topic(name, t, start, ephemeral) for t in topics]
        subscription = MemorySubscription(self.hub, name, states, on_revoke, self.scheduled)
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
            state.nacked[p].clear()
            state.pending[p].clear()
            state.attempts[p].clear()
            state.cursor[p] = target
            state.marks[p].reset(target)
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
        if not isinstance(delivery, MemoryDelivery):
            raise ConfigurationError("commit needs a delivery from this broker")
        if delivery.fenced() or delivery.settled:
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

    # -- inspection and administration (tidings.inspection.Inspectable) ---------------

    async def list_topics(self) -> list[TopicInfo]:
        self._check_open()
        return _admin.list_topics(self.hub)

    async def list_groups(self) -> list[GroupInfo]:
        self._check_open()
        return _admin.list_groups(self.hub)

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        self._check_open()
        return _admin.read(self.hub, topic, after, last, limit)

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        self._check_open()
        return _admin.delete(self.hub, topic, entries)

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        self._check_open()
        return _admin.move(self.hub, topic, entries)
