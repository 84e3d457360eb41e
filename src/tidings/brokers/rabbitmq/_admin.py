"""Looking into RabbitMQ (:class:`~tidings.inspection.Inspectable`): topics, groups, history.

What exists comes from the management API (:mod:`._management`): a topic is
an exchange ``T`` with history streams ``T.history.<p>``; a group ``G`` of it
has the quorum queues ``T.G.<p>``. What is stored comes from the streams
(:mod:`._history`): a topic's events are the offsets its streams hold, less
the tombstoned ones. A group's lag on a partition is what waits in its queue
(ready: counted exactly over AMQP; unacknowledged: the management API's
statistics) plus the retries waiting in its delay queues; its head is the
partition stream's end. Members and owners are consumer tags: a member
consumes ``T.G.members`` and each partition queue it owns under its member id.
"""

from __future__ import annotations

import asyncio
import heapq
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractConnection

from tidings.broker import Message
from tidings.brokers.rabbitmq._binding import read
from tidings.brokers.rabbitmq._history import Bounds, StreamReader
from tidings.brokers.rabbitmq._management import Management
from tidings.brokers.rabbitmq._topology import (
    RESERVED_GROUPS,
    history_queue,
    members_queue,
    partition_queue,
    tombstones_queue,
)
from tidings.errors import GroupInUseError
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["Inspector"]

#: Seconds a topic found without deletions is taken to have none.
_RECHECK = 5.0
_HISTORY = re.compile(r"^(?P<topic>.+)\.history\.(?P<partition>\d+)$")
_AGE = re.compile(r"^(\d+)([YMDhms])$")
_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass
class _Topic:
    name: str
    partitions: int = 0
    arguments: dict[str, Any] = field(default_factory=dict)
    rate: float = 0.0
    bytes: int = 0


class Inspector:
    """Inspection of one broker: its management API and a stream reader on its connection."""

    def __init__(self, management: Management, connection: AbstractConnection) -> None:
        self.management = management
        self.streams = StreamReader(connection)
        self.connection = connection
        #: Partitions of the topics seen (fixed once a topic exists).
        self._partitions: dict[str, int] = {}
        #: Topics found without a tombstone stream, and when.
        self._untombstoned: dict[str, float] = {}

    # -- what exists --------------------------------------------------------------------

    async def topics(self) -> dict[str, _Topic]:
        exchanges = {x["name"] for x in await self.management.exchanges()}
        found: dict[str, _Topic] = {}
        for queue in await self.management.queues():
            match = _HISTORY.match(queue["name"])
            if match is None or queue.get("type") != "stream":
                continue
            name = match["topic"]
            if name not in exchanges:
                continue
            topic = found.setdefault(name, _Topic(name))
            topic.partitions = max(topic.partitions, int(match["partition"]) + 1)
            topic.arguments = queue.get("arguments") or {}
            stats = queue.get("message_stats") or {}
            topic.rate += float((stats.get("publish_details") or {}).get("rate", 0.0))
            topic.bytes += int(queue.get("message_bytes") or 0)
            if int(queue.get("messages") or 0) > 0:
                self.streams.known.add(queue["name"])  # statistics lag, never lead
        for topic in found.values():
            self._partitions[topic.name] = topic.partitions
        return dict(sorted(found.items()))

    async def partitions(self, topic: str) -> int | None:
        known = self._partitions.get(topic)
        if known is not None:
            return known
        found = (await self.topics()).get(topic)
        return found.partitions if found is not None else None

    async def bounds(
        self, topic: str, partitions: int, only: Sequence[int] | None = None
    ) -> dict[int, Bounds]:
        """What each partition stream (of ``only``, else every one) holds now."""
        chosen = list(range(partitions)) if only is None else list(only)
        found = await asyncio.gather(
            *(self.streams.bounds(history_queue(topic, p)) for p in chosen)
        )
        return {p: b for p, b in zip(chosen, found, strict=True) if b is not None}

    async def tombstones(self, topic: str) -> set[tuple[int, int]]:
        """The deleted entries of ``topic`` (a topic without deletions has no tombstone
        stream: that is looked up again after a few seconds, or after :meth:`deleted`)."""
        checked = self._untombstoned.get(topic)
        if checked is not None and time.monotonic() - checked < _RECHECK:
            return set()
        stream = tombstones_queue(topic)
        if stream not in self.streams.known and not await self._exists(stream):
            self._untombstoned[topic] = time.monotonic()
            return set()
        self._untombstoned.pop(topic, None)
        return await self.streams.tombstones(stream)

    def deleted(self, topic: str) -> None:
        """``topic`` has a tombstone stream now (this client wrote one)."""
        self._untombstoned.pop(topic, None)

    async def _exists(self, name: str) -> bool:
        return name in await self._counts([name])

    async def list_topics(self) -> list[TopicInfo]:
        out = []
        topics = list((await self.topics()).values())
        counted = await asyncio.gather(*(self._count(t) for t in topics))
        for topic, events in zip(topics, counted, strict=True):
            arguments = topic.arguments
            out.append(
                TopicInfo(
                    name=topic.name,
                    partitions=topic.partitions,
                    events=events,
                    bytes=topic.bytes,
                    retention_seconds=_age(arguments.get("x-max-age")),
                    retention_bytes=_int(arguments.get("x-max-length-bytes")),
                    compact=False,
                    rate=topic.rate,
                )
            )
        return out

    async def _count(self, topic: _Topic) -> int:
        bounds, gone = await asyncio.gather(
            self.bounds(topic.name, topic.partitions), self.tombstones(topic.name)
        )
        events = sum(b.head - b.first for b in bounds.values())
        for partition, offset in gone:
            kept = bounds.get(partition)
            if kept is not None and kept.first <= offset < kept.head:
                events -= 1
        return max(events, 0)

    async def list_groups(self) -> list[GroupInfo]:
        topics = await self.topics()
        queues = await self.management.queues()
        consumers = await self.management.consumers()
        by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for consumer in consumers:
            by_queue[(consumer.get("queue") or {}).get("name", "")].append(consumer)
        unacked = {q["name"]: int(q.get("messages_unacknowledged") or 0) for q in queues}
        delayed: dict[str, int] = defaultdict(int)
        groups: dict[str, dict[tuple[str, int], str]] = defaultdict(dict)
        for queue in queues:
            name = queue["name"]
            head, _, tail = name.rpartition(".delay.")
            if head and tail.isdigit():
                delayed[head] += int(queue.get("messages") or 0)
                continue
            arguments = queue.get("arguments") or {}
            if queue.get("type") != "quorum" or not arguments.get("x-single-active-consumer"):
                continue
            found = _split(name, topics)
            if found is not None:
                topic, group, partition = found
                groups[group][(topic, partition)] = name
        heads: dict[str, dict[int, Bounds]] = {}
        for topic in {t for parts in groups.values() for t, _ in parts}:
            heads[topic] = await self.bounds(topic, topics[topic].partitions)
        rosters = {members_queue(t, g) for g, parts in groups.items() for t, _ in parts}
        exact = await self._counts(
            [n for parts in groups.values() for n in parts.values()] + sorted(rosters)
        )
        out = []
        for group, parts in sorted(groups.items()):
            members: set[str] = set()
            counted = 0
            lags = []
            for topic in sorted({t for t, _ in parts}):
                roster = members_queue(topic, group)
                for consumer in by_queue.get(roster, ()):
                    tag = str(consumer.get("consumer_tag", ""))
                    members.add(tag.removesuffix(f"/{topic}"))
                counted = max(counted, exact.get(roster, (0, 0))[1])
            for (topic, partition), name in sorted(parts.items()):
                owners = [
                    str(c.get("consumer_tag", ""))
                    for c in by_queue.get(name, ())
                    if c.get("active", True)
                ]
                lag = exact.get(name, (0, 0))[0] + unacked.get(name, 0) + delayed.get(name, 0)
                bounds = heads.get(topic, {}).get(partition)
                top = bounds.head if bounds is not None else lag
                lags.append(
                    PartitionLag(topic, partition, max(top - lag, 0), max(top, lag), _owner(owners))
                )
            listed = sorted(members)
            # The statistics name consumers a moment late; the count over AMQP is exact.
            listed += ["(a member not listed yet)"] * max(counted - len(listed), 0)
            out.append(GroupInfo(group, listed, lags))
        return out

    async def _counts(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``(messages ready, consumers)`` of each queue that exists, exactly (``queue.declare``
        passive)."""
        counts: dict[str, tuple[int, int]] = {}

        async def one(name: str) -> None:
            async with self.streams._slots:
                probed = await self.streams.probe(name)
                if probed is None:
                    return
                channel, queue = probed
                result = queue.declaration_result
                counts[name] = (int(result.message_count or 0), int(result.consumer_count or 0))
                await self.streams.done(channel, True)

        await asyncio.gather(*(one(n) for n in names))
        return counts

    async def delete_group(self, name: str) -> bool:
        topics = await self.topics()
        queues = await self.management.queues()
        consumers = await self.management.consumers()
        mine = []
        for queue in queues:
            found = _split(queue["name"], topics)
            if found is not None and found[1] == name:
                mine.append(queue["name"])
        if not mine:
            return False
        watched = set(mine) | {members_queue(t, name) for t in topics}
        live = {
            str(c.get("consumer_tag", "")).split("/", 1)[0]
            for c in consumers
            if (c.get("queue") or {}).get("name") in watched
        }
        exact = await self._counts(sorted(watched))
        if any(consumers for _, consumers in exact.values()):
            live = live or {"(not listed yet)"}
        if live:
            raise GroupInUseError(
                f"consumer group {name!r} has {len(live)} live member(s) "
                f"({', '.join(sorted(live))}); stop them first"
            )
        prefixes = tuple(f"{q}.delay." for q in mine)
        for queue in queues:
            if queue["name"] in mine or queue["name"].startswith(prefixes):
                await self.management.delete_queue(queue["name"])
        return True

    # -- what is stored -------------------------------------------------------------------

    async def read(
        self,
        topic: str,
        after: Mapping[int, int] | None,
        last: int | None,
        limit: int,
    ) -> list[StoredMessage]:
        partitions = await self.partitions(topic)
        if partitions is None or limit <= 0:
            return []
        chosen = after if after is not None else dict.fromkeys(range(partitions), 0)
        chosen = {p: o for p, o in chosen.items() if 0 <= p < partitions}
        bounds, gone = await asyncio.gather(
            self.bounds(topic, partitions, sorted(chosen)), self.tombstones(topic)
        )
        per_partition = await asyncio.gather(
            *(
                self._read_partition(topic, p, offset, bounds.get(p), gone, last, limit)
                for p, offset in chosen.items()
            )
        )
        merged = list(heapq.merge(*per_partition, key=lambda m: (m.published_at, m.partition)))
        if last is not None:
            merged = merged[-last:]
        return merged[:limit]

    async def _read_partition(
        self,
        topic: str,
        partition: int,
        offset: int,
        bounds: Bounds | None,
        gone: set[tuple[int, int]],
        last: int | None,
        limit: int,
    ) -> list[StoredMessage]:
        if bounds is None or bounds.first == bounds.head:
            return []
        hidden = sum(1 for p, o in gone if p == partition and bounds.first <= o < bounds.head)
        if last is not None:
            want = min(last, limit)
            start = max(bounds.head - want - hidden, bounds.first)
        else:
            want = limit
            start = max(offset, bounds.first)
        stream = history_queue(topic, partition)
        found: list[StoredMessage] = []
        while start < bounds.head and len(found) < want + (0 if last is None else hidden):
            page = await self.streams.read(stream, start, bounds.head, want + hidden)
            if not page:
                break
            for entry in page:
                if (partition, entry.offset) in gone:
                    continue
                key, headers, _, published = read(entry.message)
                message = Message(entry.message.body, headers, key)
                found.append(StoredMessage(topic, partition, entry.offset, published, message))
            start = page[-1].offset + 1
        return found[-want:] if last is not None else found[:want]


def _split(name: str, topics: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """``(topic, group, partition)`` of a group's partition queue name (the longest topic)."""
    stem, dot, number = name.rpartition(".")
    if not dot or not number.isdigit():
        return None
    best: tuple[str, str, int] | None = None
    for topic in topics:
        if stem.startswith(topic + ".") and (best is None or len(topic) > len(best[0])):
            group = stem[len(topic) + 1 :]
            if group and group not in RESERVED_GROUPS:
                best = (topic, group, int(number))
    if best is not None and partition_queue(*best) != name:
        return None
    return best


def _owner(tags: list[str]) -> str | None:
    return tags[0] if tags else None


def _age(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    match = _AGE.match(value)
    return float(int(match[1]) * _UNITS[match[2]]) if match else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None
