"""Looking into a memory hub (:class:`~tidings.inspection.Inspectable`): topics, groups, lag.

The same views the embedded broker gives the CLI and the demo, read from the
hub's lists. Deleting marks offsets removed (readers skip them and count them
as settled); moving appends to the target and removes the original in one
step, as nothing else runs in between on the event loop.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator, Mapping, Sequence

from tidings.broker import Message
from tidings.brokers.memory._hub import MemoryHub, Record, Topic
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["delete", "list_groups", "list_topics", "move", "read"]

_RATE_WINDOW = 60.0


def _live(topic: Topic, p: int) -> Iterator[Record]:
    removed = topic.removed[p]
    return (r for r in topic.partitions[p] if r.offset not in removed)


def list_topics(hub: MemoryHub) -> list[TopicInfo]:
    since = time.time() - _RATE_WINDOW
    out = []
    for name in sorted(hub.topics):
        topic = hub.topics[name]
        records = [r for p in range(len(topic.partitions)) for r in _live(topic, p)]
        recent = sum(1 for r in records if r.published_at >= since)
        out.append(
            TopicInfo(
                name=name,
                partitions=len(topic.partitions),
                events=len(records),
                bytes=sum(len(r.message.value) for r in records),
                retention_seconds=None,
                retention_bytes=None,
                compact=False,
                rate=recent / _RATE_WINDOW,
            )
        )
    return out


def list_groups(hub: MemoryHub) -> list[GroupInfo]:
    members: dict[str, set[str]] = {}
    lags: dict[str, list[PartitionLag]] = {}
    for (group, topic_name), state in sorted(hub.groups.items()):
        if state.ephemeral:
            continue
        members.setdefault(group, set()).update(m.member_id for m in state.members)
        for p, mark in enumerate(state.marks):
            owner = state.owner[p]
            lags.setdefault(group, []).append(
                PartitionLag(
                    topic_name,
                    p,
                    mark.committed,
                    len(state.topic.partitions[p]),
                    owner.member_id if owner is not None else None,
                )
            )
    return [GroupInfo(name, sorted(members[name]), lags[name]) for name in sorted(lags)]


def read(
    hub: MemoryHub,
    topic_name: str,
    after: Mapping[int, int] | None,
    last: int | None,
    limit: int,
) -> list[StoredMessage]:
    topic = hub.topics.get(topic_name)
    if topic is None:
        return []

    def stored(p: int, record: Record) -> StoredMessage:
        return StoredMessage(topic_name, p, record.offset, record.published_at, record.message)

    def order(m: StoredMessage) -> tuple[float, int, int]:
        return (m.published_at, m.partition, m.offset)

    if last is not None:
        everything = [stored(p, r) for p in range(len(topic.partitions)) for r in _live(topic, p)]
        return sorted(heapq.nlargest(min(last, limit), everything, key=order), key=order)
    starts = after if after else dict.fromkeys(range(len(topic.partitions)), 0)
    found = [
        stored(p, r)
        for p, offset in starts.items()
        if 0 <= p < len(topic.partitions)
        for r in _live(topic, p)
        if r.offset >= offset
    ]
    return heapq.nsmallest(limit, found, key=order)


def delete(hub: MemoryHub, topic_name: str, entries: Sequence[tuple[int, int]]) -> int:
    topic = hub.topics.get(topic_name)
    if topic is None:
        return 0
    removed = 0
    for p, offset in entries:
        exists = 0 <= p < len(topic.partitions) and 0 <= offset < len(topic.partitions[p])
        if exists and offset not in topic.removed[p]:
            topic.removed[p].add(offset)
            removed += 1
    return removed


def move(hub: MemoryHub, topic_name: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
    moved = 0
    for p, offset, target, message in entries:
        if delete(hub, topic_name, [(p, offset)]):
            hub.append(target, [message])
            moved += 1
    return moved
