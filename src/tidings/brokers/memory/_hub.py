"""The shared state of ``memory://NAME`` brokers: topics, their records, and group states."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from tidings.broker import Message, StartFrom
from tidings.brokers._partitioning import partition_for
from tidings.brokers.memory._group import GroupTopic, MemorySubscription
from tidings.schemas.registry import MemoryStore
from tidings.webhooks.registry import MemoryWebhookStore

__all__ = ["MemoryHub", "Record", "Topic", "hubs"]


class Record(msgspec.Struct, gc=False):
    # Not tracked by the cycle collector: a long log would otherwise be walked
    # by every full collection.
    offset: int
    message: Message
    published_at: float


@dataclass(slots=True)
class Topic:
    name: str
    partitions: list[list[Record]]
    next_keyless: int = 0
    #: Per partition, offsets deleted by an operator (``Inspectable.delete``/``move``).
    removed: list[set[int]] = field(default_factory=list)
    #: The group states reading this topic: an append wakes only their members.
    readers: list[GroupTopic] = field(default_factory=list)


@dataclass
class MemoryHub:
    """The shared state behind ``memory://NAME`` brokers: topics and group positions."""

    default_partitions: int = 4
    topics: dict[str, Topic] = field(default_factory=dict)
    groups: dict[tuple[str, str], GroupTopic] = field(default_factory=dict)
    processed: dict[str, set[str]] = field(default_factory=dict)
    #: The schema registry of this hub's brokers (in this process only).
    schemas: MemoryStore = field(default_factory=MemoryStore)
    #: The webhook registrations of this hub's brokers (in this process only).
    webhooks: MemoryWebhookStore = field(default_factory=MemoryWebhookStore)
    _subscriptions: set[MemorySubscription] = field(default_factory=set)

    def topic(self, name: str, partitions: int | None = None) -> Topic:
        found = self.topics.get(name)
        if found is None:
            n = partitions or self.default_partitions
            found = Topic(name, [[] for _ in range(n)], removed=[set() for _ in range(n)])
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
            records.append(Record(len(records), message, now))
        for state in topic.readers:
            for member in state.members:
                member.wake()

    def group_topic(
        self, group: str, topic: str, start: StartFrom, ephemeral: bool = False
    ) -> GroupTopic:
        state = self.groups.get((group, topic))
        if state is None:
            state = GroupTopic(self.topic(topic), start, ephemeral)
            self.groups[(group, topic)] = state
            state.topic.readers.append(state)
        return state

    def forget(self, group: str, state: GroupTopic) -> None:
        """Drop a group-less reader's state once it closed."""
        self.groups.pop((group, state.topic.name), None)
        if state in state.topic.readers:
            state.topic.readers.remove(state)

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


hubs: dict[str, MemoryHub] = {}
