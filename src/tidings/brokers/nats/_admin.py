"""Looking into JetStream (:class:`~tidings.inspection.Inspectable`): streams, consumers, messages.

Topics are the streams tidings made (their description names the topic); a
group's lag per partition is its consumer's ``num_pending + num_ack_pending``
(``committed`` is the consumer's ack floor, as a stream sequence). Messages are
read one by one with the stream's message-get API (``next_by_subj``), which
joins nothing; deleting is JetStream's message delete. The message rate of the
last minute is not available from the server: ``rate`` is 0.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Mapping, Sequence

from nats.js import api
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.manager import JetStreamManager

from tidings.broker import Message
from tidings.brokers.nats._binding import from_wire
from tidings.brokers.nats._group import lease_key
from tidings.brokers.nats._streams import Topic, group_of, topic_of
from tidings.inspection import GroupInfo, PartitionLag, StoredMessage, TopicInfo

__all__ = ["delete", "list_groups", "list_topics", "read"]


async def _topics(
    jsm: JetStreamManager, default_partitions: int
) -> list[tuple[Topic, api.StreamInfo]]:
    found = []
    for info in await jsm.streams_info():
        topic = topic_of(info, default_partitions)
        if topic is not None:
            found.append((topic, info))
    return sorted(found, key=lambda pair: pair[0].name)


async def list_topics(jsm: JetStreamManager, default_partitions: int) -> list[TopicInfo]:
    out = []
    for topic, info in await _topics(jsm, default_partitions):
        config = info.config
        max_bytes = config.max_bytes if config.max_bytes and config.max_bytes > 0 else None
        out.append(
            TopicInfo(
                name=topic.name,
                partitions=topic.partitions,
                events=info.state.messages,
                bytes=info.state.bytes,
                retention_seconds=config.max_age or None,
                retention_bytes=max_bytes // topic.partitions if max_bytes else None,
                compact=False,
                rate=0.0,
            )
        )
    return out


async def _holders(leases: KeyValue | None) -> dict[str, str]:
    if leases is None:
        return {}
    holders: dict[str, str] = {}
    try:
        keys = await leases.keys()
    except (NotFoundError, APIError):
        return {}
    for key in keys:
        with contextlib.suppress(NotFoundError):
            entry = await leases.get(key)
            holders[key] = (entry.value or b"").decode(errors="replace")
    return holders


async def list_groups(
    jsm: JetStreamManager, leases: KeyValue | None, default_partitions: int
) -> list[GroupInfo]:
    holders = await _holders(leases)
    lags: dict[str, list[PartitionLag]] = {}
    for topic, _info in await _topics(jsm, default_partitions):
        for consumer in await jsm.consumers_info(topic.stream):
            found = group_of(consumer)
            if found is None:
                continue
            group, partition = found
            committed = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
            lag = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
            owner = holders.get(lease_key(group, topic.stream, partition))
            lags.setdefault(group, []).append(
                PartitionLag(topic.name, partition, committed, committed + lag, owner)
            )
    return [
        GroupInfo(
            name,
            sorted({p.owner for p in parts if p.owner is not None}),
            sorted(parts, key=lambda p: (p.topic, p.partition)),
        )
        for name, parts in sorted(lags.items())
    ]


async def _read_from(
    jsm: JetStreamManager, topic: Topic, subject: str, start: int, limit: int
) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    sequence = max(start, 1)
    while len(out) < limit:
        try:
            raw = await jsm.get_msg(topic.stream, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            break
        if raw.seq is None:
            break
        headers, key = from_wire(raw.headers)
        partition = int((raw.subject or "").rsplit(".", 1)[-1] or 0)
        published = raw.time.timestamp() if raw.time is not None else 0.0
        out.append(
            StoredMessage(
                topic.name,
                partition,
                raw.seq - 1,
                published,
                Message(raw.data or b"", headers, key),
            )
        )
        sequence = raw.seq + 1
    return out


async def read(
    jsm: JetStreamManager,
    topic: Topic,
    after: Mapping[int, int] | None,
    last: int | None,
    limit: int,
) -> list[StoredMessage]:
    every = f"{topic.name}.*"
    if last is not None:
        state = (await jsm.stream_info(topic.stream)).state
        count = min(last, limit)
        start = max(state.first_seq, state.last_seq - count + 1)
        return await _read_from(jsm, topic, every, start, count)
    if not after:
        return await _read_from(jsm, topic, every, 1, limit)
    found: list[StoredMessage] = []
    for partition, offset in after.items():
        if 0 <= partition < topic.partitions:
            found += await _read_from(jsm, topic, topic.subject(partition), offset + 1, limit)
    return heapq.nsmallest(limit, found, key=lambda m: m.offset)


async def delete(jsm: JetStreamManager, topic: Topic, entries: Sequence[tuple[int, int]]) -> int:
    removed = 0
    for _partition, offset in entries:
        try:
            await jsm.delete_msg(topic.stream, offset + 1)
        except (NotFoundError, APIError):
            continue
        removed += 1
    return removed
