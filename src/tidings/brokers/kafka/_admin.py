"""Topics, groups and stored records, without joining a group (Inspectable, Provisioning, seek).

Kafka keeps a partition as an append-only log: it can drop a partition's
oldest records (DeleteRecords) but not one record in the middle. ``delete``
and ``move`` therefore *hide* records from tidings' inspection (``read``,
``tail``, ``dlq``) by writing their positions to the ``__tidings-deleted``
topic; consumer groups still read them. This is documented in
docs/brokers/kafka.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tidings.broker import Message, Position
from tidings.brokers.kafka._binding import message_headers, message_key, record_headers
from tidings.brokers.kafka._client import client_settings, stop_consumer
from tidings.brokers.kafka._marks import SHADOW_PREFIX
from tidings.brokers.kafka._offsets import GroupOffsets
from tidings.brokers.kafka._url import KafkaConfig
from tidings.errors import ConfigurationError
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["DELETED_TOPIC", "KafkaAdmin"]

DELETED_TOPIC = "__tidings-deleted"
_TOPIC_EXISTS = 36
_READ_WAIT = 0.5


class KafkaAdmin:
    def __init__(
        self, config: KafkaConfig, aiokafka: Any, admin: Any, client: Any, producer: Any
    ) -> None:
        self.config = config
        self._aiokafka = aiokafka
        self._admin = admin
        self._client = client
        self._producer = producer
        self.offsets = GroupOffsets(client)
        self._known: set[str] = set()
        self._inspector: Any = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._inspector is not None:
            inspector, self._inspector = self._inspector, None
            await stop_consumer(inspector, self.config.connect_timeout, "the offset inspector")

    # -- topics ----------------------------------------------------------------------

    async def partitions(self, topic: str) -> list[int]:
        cluster = await self._client.fetch_all_metadata()
        found = cluster.partitions_for_topic(topic)
        return sorted(found) if found else []

    async def ensure(self, topic: str) -> None:
        """Create ``topic`` with the URL's partitions unless it exists (cached)."""
        if topic in self._known:
            return
        await self.create(topic, self.config.partitions, {})
        self._known.add(topic)

    async def create(self, topic: str, partitions: int, configs: dict[str, str]) -> bool:
        """True if created, False if it existed."""
        from aiokafka.admin import NewTopic

        new = NewTopic(topic, partitions, self.config.replication, topic_configs=configs)
        response = await self._admin.create_topics([new])
        for _name, error, message in response.topic_errors:
            if error == _TOPIC_EXISTS:
                return False
            if error:
                raise ConfigurationError(f"kafka refused to create topic {topic!r}: {message}")
        return True

    async def ensure_topic(
        self,
        name: str,
        *,
        partitions: int | None,
        retention: float | None,
        retention_bytes: int | None,
        compact: bool,
    ) -> None:
        configs: dict[str, str] = {"cleanup.policy": "compact" if compact else "delete"}
        configs["retention.ms"] = "-1" if retention is None else str(int(retention * 1000))
        configs["retention.bytes"] = "-1" if retention_bytes is None else str(retention_bytes)
        created = await self.create(name, partitions or self.config.partitions, configs)
        self._known.add(name)
        if created:
            return
        existing = await self.partitions(name)
        if partitions is not None and existing and len(existing) != partitions:
            raise ConfigurationError(
                f"topic {name!r} has {len(existing)} partitions, not {partitions}; Kafka "
                "cannot change a topic's partition count without moving its keys"
            )
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        try:
            await self._admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs)]
            )
        except Exception as exc:
            raise ConfigurationError(
                f"kafka could not update the settings of topic {name!r}: {exc}"
            ) from exc

    # -- offsets ---------------------------------------------------------------------

    async def inspector(self) -> Any:
        if self._inspector is None:
            consumer = self._aiokafka.AIOKafkaConsumer(
                group_id=None, enable_auto_commit=False, **client_settings(self.config)
            )
            try:
                await consumer.start()
            except BaseException:
                await stop_consumer(consumer, self.config.connect_timeout, "the offset inspector")
                raise
            self._inspector = consumer
        return self._inspector

    async def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition, (first offset, offset after the last)."""
        parts = await self.partitions(topic)
        if not parts:
            return {}
        tps = [self._aiokafka.TopicPartition(topic, p) for p in parts]
        inspector = await self.inspector()
        begin = await inspector.beginning_offsets(tps)
        end = await self._ends(await inspector.end_offsets(tps), begin)
        return {tp.partition: (begin[tp], end[tp]) for tp in tps}

    async def _ends(self, listed: dict[Any, int], begin: dict[Any, int]) -> dict[Any, int]:
        """The offset after each partition's last record.

        ListOffsets(latest) is the answer on Kafka; tansu answers the last record
        *batch*'s base offset + 1 instead. Reading the batch at ``listed - 1``
        finds the true end on both (a batch is returned whole).
        """
        ends = dict(listed)
        probe = {tp: end - 1 for tp, end in listed.items() if end > begin[tp]}
        if not probe:
            return ends
        async with self._lock:
            inspector = await self.inspector()
            inspector.assign(list(probe))
            for tp, offset in probe.items():
                inspector.seek(tp, offset)
            waiting = set(probe)
            deadline = time.monotonic() + self.config.connect_timeout
            while waiting and time.monotonic() < deadline:
                batches = await inspector.getmany(*waiting, timeout_ms=200)
                for tp, records in batches.items():
                    if records:
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                        waiting.discard(tp)
            inspector.assign([])
        return ends

    async def positions(self, topic: str, position: Position) -> dict[int, int]:
        """The offset ``position`` means in each partition of ``topic``."""
        bounds = await self.bounds(topic)
        if isinstance(position, datetime):
            inspector = await self.inspector()
            ms = int(position.timestamp() * 1000)
            tps = {self._aiokafka.TopicPartition(topic, p): ms for p in bounds}
            found = await inspector.offsets_for_times(tps)
            return {
                tp.partition: (at.offset if at is not None else bounds[tp.partition][1])
                for tp, at in found.items()
            }
        if position == "beginning":
            return {p: begin for p, (begin, _) in bounds.items()}
        if position == "end":
            return {p: end for p, (_, end) in bounds.items()}
        if isinstance(position, int) and not isinstance(position, bool):
            return {p: min(max(position, begin), end) for p, (begin, end) in bounds.items()}
        raise ConfigurationError(f"cannot seek to {position!r}")

    # -- inspection ------------------------------------------------------------------

    async def list_topics(self) -> list[TopicInfo]:
        cluster = await self._client.fetch_all_metadata()
        names = sorted(t for t in cluster.topics() if not t.startswith("__"))
        inspector = await self.inspector()
        since = int((time.time() - 60) * 1000)
        out: list[TopicInfo] = []
        for name in names:
            bounds = await self.bounds(name)
            events = sum(end - begin for begin, end in bounds.values())
            tps = {self._aiokafka.TopicPartition(name, p): since for p in bounds}
            recent = 0
            if tps:
                found = await inspector.offsets_for_times(tps)
                for tp, at in found.items():
                    if at is not None:
                        recent += bounds[tp.partition][1] - at.offset
            out.append(
                TopicInfo(
                    name=name,
                    partitions=len(bounds),
                    events=events,
                    bytes=0,
                    retention_seconds=None,
                    retention_bytes=None,
                    compact=False,
                    rate=recent / 60.0,
                )
            )
        return out

    async def list_groups(self) -> list[GroupInfo]:
        listed = await self._admin.list_consumer_groups()
        names = sorted({str(row[0]) for row in listed if not str(row[0]).startswith(SHADOW_PREFIX)})
        cluster = await self._client.fetch_all_metadata()
        every = [
            (topic, p)
            for topic in cluster.topics()
            if not topic.startswith("__")
            for p in cluster.partitions_for_topic(topic) or ()
        ]
        out: list[GroupInfo] = []
        for name in names:
            members, owners = await self._members(name)
            committed = await self.offsets.fetch(name, every)
            lags: list[PartitionLag] = []
            heads: dict[str, dict[int, tuple[int, int]]] = {}
            # The group reads a topic if it committed or owns any of its partitions
            # (some servers, tansu among them, describe no assignments); its other
            # partitions, not committed yet, count from their first record.
            topics = {topic for topic, _ in committed} | {topic for topic, _ in owners}
            partitions = {(topic, p) for topic, p in every if topic in topics}
            for topic, p in sorted(partitions | set(committed)):
                if topic not in heads:
                    heads[topic] = await self.bounds(topic)
                begin, head = heads[topic].get(p, (0, 0))
                position = committed.get((topic, p), begin)
                lags.append(PartitionLag(topic, p, position, head, owners.get((topic, p))))
            out.append(GroupInfo(name=name, members=members, partitions=lags))
        return out

    async def _members(self, group: str) -> tuple[list[str], dict[tuple[str, int], str]]:
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        members: list[str] = []
        owners: dict[tuple[str, int], str] = {}
        try:
            responses = await self._admin.describe_consumer_groups([group])
        except Exception:
            return members, owners
        for response in responses:
            for described in response.groups:
                for member in described[5]:
                    member_id, assignment = str(member[0]), member[4]
                    members.append(member_id)
                    try:
                        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                    except Exception:
                        continue
                    for topic, parts in decoded.assignment:
                        for p in parts:
                            owners[(topic, p)] = member_id
        return sorted(members), owners

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        bounds = await self.bounds(topic)
        hidden = await self._hidden(topic) if topic != DELETED_TOPIC else set()
        starts: dict[int, int] = {}
        for p, (begin, end) in bounds.items():
            if after is not None and p not in after:
                continue  # ``after`` names the partitions to read
            start = max(begin, (after or {}).get(p, begin))
            if last is not None:
                start = max(start, end - last - len([o for q, o in hidden if q == p]))
            if start < end:
                starts[p] = start
        records = await self._scan(topic, {p: (s, bounds[p][1]) for p, s in starts.items()})
        stored = [
            StoredMessage(
                topic=topic,
                partition=p,
                offset=r.offset,
                published_at=r.timestamp / 1000.0,
                message=Message(r.value or b"", message_headers(r.headers), message_key(r.key)),
            )
            for p, r in records
            if (p, r.offset) not in hidden
        ]
        stored.sort(key=lambda m: (m.published_at, m.partition, m.offset))
        if last is not None:
            stored = stored[-last:]
        return stored[:limit]

    async def _scan(self, topic: str, ranges: dict[int, tuple[int, int]]) -> list[tuple[int, Any]]:
        """Every record in ``ranges`` (partition -> [start, end)), read by a group-less consumer."""
        if not ranges:
            return []
        aiokafka = self._aiokafka
        consumer = aiokafka.AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **client_settings(self.config)
        )
        out: list[tuple[int, Any]] = []
        try:
            await consumer.start()
            tps = {aiokafka.TopicPartition(topic, p): r for p, r in ranges.items()}
            consumer.assign(list(tps))
            for tp, (start, _) in tps.items():
                consumer.seek(tp, start)
            open_ranges = dict(tps)
            deadline = time.monotonic() + self.config.connect_timeout
            while open_ranges and time.monotonic() < deadline:
                batches = await consumer.getmany(*open_ranges, timeout_ms=int(_READ_WAIT * 1000))
                for tp, records in batches.items():
                    end = open_ranges[tp][1]
                    for record in records:
                        if record.offset < end:
                            out.append((tp.partition, record))
                    if records and records[-1].offset >= end - 1:
                        del open_ranges[tp]
                        consumer.pause(tp)
                for tp in list(open_ranges):
                    if await consumer.position(tp) >= open_ranges[tp][1]:
                        del open_ranges[tp]
        finally:
            await stop_consumer(consumer, self.config.connect_timeout, "a topic scan")
        return out

    async def _hidden(self, topic: str) -> set[tuple[int, int]]:
        hidden: set[tuple[int, int]] = set()
        bounds = await self.bounds(DELETED_TOPIC)
        if not bounds:
            return hidden
        records = await self._scan(DELETED_TOPIC, {p: r for p, r in bounds.items() if r[0] < r[1]})
        for _, record in records:
            if record.key == topic.encode() and record.value:
                partition, _, offset = record.value.decode().partition(":")
                hidden.add((int(partition), int(offset)))
        return hidden

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        bounds = await self.bounds(topic)
        hidden = await self._hidden(topic)
        chosen = sorted(
            {
                (p, o)
                for p, o in entries
                if p in bounds and bounds[p][0] <= o < bounds[p][1] and (p, o) not in hidden
            }
        )
        if not chosen:
            return 0
        await self.ensure(DELETED_TOPIC)
        futures = [
            await self._producer.send(DELETED_TOPIC, f"{p}:{o}".encode(), key=topic.encode())
            for p, o in chosen
        ]
        await asyncio.gather(*futures)
        return len(chosen)

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        futures = []
        for _p, _o, target, message in entries:
            await self.ensure(target)
            futures.append(
                await self._producer.send(
                    target,
                    message.value,
                    key=None if message.key is None else message.key.encode(),
                    headers=record_headers(message.headers),
                )
            )
        await asyncio.gather(*futures)
        return await self.delete(topic, [(p, o) for p, o, _, _ in entries])
