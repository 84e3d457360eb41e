"""Looking into Redis (:class:`~tidings.inspection.Inspectable`): topics, groups, entries.

Topics are the names in ``<prefix>:topics``. A group's lag on a partition is
what it has not read yet (the stream's next offset less the group's
last-delivered one) plus what it read and has not acked (``XPENDING``); the
owner is the holder of the partition's lease. Entries are read with ``XRANGE``
(joining nothing) from an offset found by bisecting on time; the rate is the
entries of the last minute, from the offsets in the ids.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from tidings.broker import Message
from tidings.brokers.redis._binding import Keys, parse_entry, split_id
from tidings.brokers.redis._seek import before_offset
from tidings.errors import GroupInUseError
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["entry_id", "list_groups", "list_topics", "read"]


async def _next_offset(client: Redis, stream: str) -> tuple[int, int]:
    """``(next offset, entries of the last minute)`` of ``stream``."""
    newest: Any = await client.xrevrange(stream, count=1)
    if not newest:
        return 0, 0
    head = split_id(newest[0][0])[1] + 1
    since = int(time.time() * 1000) - 60_000
    recent: Any = await client.xrange(stream, min=f"{since}-0", count=1)
    return head, (head - split_id(recent[0][0])[1]) if recent else 0


async def list_topics(client: Redis, keys: Keys, topics: Sequence[Any]) -> list[TopicInfo]:
    out = []
    for topic in topics:
        events = size = recent = 0
        for partition in range(topic.partitions):
            stream = keys.stream(topic.name, partition)
            events += await client.xlen(stream)
            size += await client.memory_usage(stream) or 0
            recent += (await _next_offset(client, stream))[1]
        out.append(
            TopicInfo(
                name=topic.name,
                partitions=topic.partitions,
                events=events,
                bytes=size,
                retention_seconds=topic.retention_ms / 1000 or None,
                retention_bytes=None,
                compact=False,
                rate=recent / 60,
            )
        )
    return out


async def list_groups(client: Redis, keys: Keys, topics: Sequence[Any]) -> list[GroupInfo]:
    partitions: dict[str, list[PartitionLag]] = {}
    members: dict[str, set[str]] = {}
    for topic in topics:
        for partition in range(topic.partitions):
            stream = keys.stream(topic.name, partition)
            if not await client.exists(stream):
                continue
            head = (await _next_offset(client, stream))[0]
            groups: Any = await client.xinfo_groups(stream)
            for info in groups:
                name = info["name"].decode()
                delivered = split_id(info["last-delivered-id"])[1] + 1
                if info["last-delivered-id"] in (b"0-0", "0-0"):
                    delivered = 0
                lag = max(head - delivered, 0) + int(info["pending"])
                holder: Any = await client.get(keys.lease(name, topic.name, partition))
                owner = holder.decode().rpartition("/")[0] if holder else None
                partitions.setdefault(name, []).append(
                    PartitionLag(topic.name, partition, head - lag, head, owner)
                )
                live: Any = await client.zrange(keys.members(name, topic.name), 0, -1)
                members.setdefault(name, set()).update(m.decode() for m in live)
    return [
        GroupInfo(name, sorted(members.get(name, ())), found)
        for name, found in sorted(partitions.items())
    ]


async def entry_id(client: Redis, stream: str, offset: int) -> bytes | None:
    """The id of the entry at ``offset``, if it is stored."""
    before = await before_offset(client, stream, offset)
    if before == "$":
        return None
    found: Any = await client.xrange(stream, min=f"({before}" if before != "0" else "-", count=1)
    if found and split_id(found[0][0])[1] == offset:
        return bytes(found[0][0])
    return None


async def read(
    client: Redis,
    keys: Keys,
    topic: str,
    partitions: int,
    after: Mapping[int, int] | None,
    last: int | None,
    limit: int,
) -> list[StoredMessage]:
    chosen = after if after is not None else dict.fromkeys(range(partitions), 0)
    per_partition: list[list[StoredMessage]] = []
    for partition, offset in chosen.items():
        stream = keys.stream(topic, partition)
        entries: Any
        if last is not None:
            newest: Any = await client.xrevrange(stream, count=min(last, limit))
            entries = list(reversed(newest))
        else:
            before = await before_offset(client, stream, offset)
            if before == "$":
                continue
            start = f"({before}" if before != "0" else "-"
            entries = await client.xrange(stream, min=start, count=limit)
        found = []
        for stream_id, fields in entries:
            ms, at = split_id(stream_id)
            if at < offset and last is None:
                continue
            value, key, headers = parse_entry(fields)
            message = Message(value, headers, key)
            found.append(StoredMessage(topic, partition, at, ms / 1000, message))
        per_partition.append(found)
    merged = list(heapq.merge(*per_partition, key=lambda m: (m.published_at, m.partition)))
    if last is not None:
        merged = merged[-last:]
    return merged[:limit]


async def delete_group(
    client: Redis, keys: Keys, topics: Sequence[Any], group: str, session_timeout: float
) -> bool:
    """Destroy ``group`` on every stream and drop its leases, retry times and members.

    Refuses (deleting nothing) while a member heartbeated within the session.
    """
    alive_since = (time.time() - session_timeout) * 1000
    live: set[str] = set()
    for topic in topics:
        found: Any = await client.zrangebyscore(
            keys.members(group, topic.name), alive_since, "+inf"
        )
        live.update(m.decode() for m in found)
    if live:
        raise GroupInUseError(
            f"consumer group {group!r} has {len(live)} live member(s) "
            f"({', '.join(sorted(live))}); stop them first"
        )
    existed = False
    for topic in topics:
        for partition in range(topic.partitions):
            stream = keys.stream(topic.name, partition)
            with contextlib.suppress(redis.exceptions.ResponseError):  # no such stream
                existed |= bool(await client.xgroup_destroy(stream, group))
            await client.delete(
                keys.lease(group, topic.name, partition), keys.dues(group, topic.name, partition)
            )
        await client.delete(keys.members(group, topic.name))
    return existed
