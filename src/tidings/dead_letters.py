"""The dead letters a broker stores: list them, find one, redrive them, purge them.

What ``tidings dlq`` and the gateway's ``/dlq`` routes do, on a broker that
implements :class:`~tidings.inspection.Inspectable` (the record itself is
:class:`~tidings.deadletter.DeadLetter`). A topic is named by its origin
(``orders``) or its dead-letter topic (``orders.dlq``). Redrive and purge
work on the dead letters stored when they start (a snapshot of the heads):
letters that arrive meanwhile, a redriven event failing again, are left for
next time.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tidings._times import format_time
from tidings.broker import Message
from tidings.codec import Codec
from tidings.deadletter import DLQ_SUFFIX, DeadLetter, dead_letter_topic
from tidings.errors import ConfigurationError, DecodeError, NotFoundError
from tidings.event import Event
from tidings.inspection import Inspectable, StoredMessage, TopicInfo
from tidings.positions import heads, stored

__all__ = [
    "CHUNK",
    "Letter",
    "Redriven",
    "dead_letter_queues",
    "find_letter",
    "find_queue",
    "letters",
    "purge",
    "queue_name",
    "redrive",
    "stored_letters",
]

#: Dead letters moved or deleted per broker call (one transaction each).
CHUNK = 500

#: Called with how many dead letters one broker call moved or deleted (progress).
Advance = Callable[[int], None]

_codec = Codec()


@dataclass(frozen=True)
class Letter:
    """A message of a dead-letter topic, read as far as it goes."""

    stored: StoredMessage
    record: DeadLetter | None
    """None: the message carries no dead-letter record."""
    event: Event | None
    problem: str | None
    """Why ``record`` or ``event`` is missing."""

    @classmethod
    def read(cls, message: StoredMessage) -> Letter:
        try:
            record = DeadLetter.from_message(message.message)
        except DecodeError as exc:
            return cls(message, None, None, str(exc))
        try:
            return cls(message, record, record.event(), None)
        except DecodeError as exc:
            return cls(message, record, None, str(exc))

    def to_dict(self) -> dict[str, Any]:
        """The letter as JSON: where it is stored, its failure record, the event (or poison)."""
        record = self.record
        out: dict[str, Any] = {
            "topic": self.stored.topic,
            "partition": self.stored.partition,
            "offset": self.stored.offset,
            "stored_at": format_time(self.stored.published_at),
            "key": self.stored.message.key,
        }
        if record is None:
            out["problem"] = self.problem
            out["headers"] = dict(self.stored.message.headers)
            out.update(_value(self.stored.message.value))
            return out
        out["dead_letter"] = {
            "error_type": record.error_type,
            "error_message": record.error_message,
            "attempts": record.attempts,
            "first_failure": format_time(record.first_failure),
            "last_failure": format_time(record.last_failure),
            "origin_topic": record.origin_topic,
            "origin_partition": record.origin_partition,
            "origin_offset": record.origin_offset,
            "origin_group": record.origin_group,
            "subscription": record.subscription,
        }
        if self.event is not None:
            out["event"] = json.loads(_codec.encode_structured(self.event))
        else:
            out["poison"] = self.problem
            out["headers"] = dict(record.original_message().headers)
            out.update(_value(record.value))
        return out


def _value(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def queue_name(topic: str) -> str:
    """The dead-letter topic of ``topic`` (``topic`` itself if it is one)."""
    return topic if topic.endswith(DLQ_SUFFIX) else dead_letter_topic(topic)


async def dead_letter_queues(broker: Inspectable) -> list[TopicInfo]:
    """Every dead-letter topic (``info.events`` is how many letters it holds)."""
    return [t for t in await broker.list_topics() if t.name.endswith(DLQ_SUFFIX)]


async def find_queue(broker: Inspectable, topic: str) -> TopicInfo | None:
    """The dead-letter topic of ``topic``; None if that topic exists but has none yet.

    Raises NotFoundError if neither exists, ConfigurationError for an empty name.
    """
    if not topic:
        raise ConfigurationError("the topic must not be empty")
    name = queue_name(topic)
    found = {t.name: t for t in await broker.list_topics()}
    if name in found:
        return found[name]
    origin = name.removesuffix(DLQ_SUFFIX)
    if origin in found:
        return None
    raise NotFoundError(f"no topic {origin!r} and no dead-letter topic {name!r}")


async def letters(broker: Inspectable, queue: TopicInfo) -> AsyncIterator[Letter]:
    """The letters of the dead-letter topic ``queue``, oldest first."""
    messages = stored(broker, queue.name, queue.partitions)
    async with contextlib.aclosing(messages):
        async for message in messages:
            yield Letter.read(message)


async def find_letter(
    broker: Inspectable, topic: str, offset: int, partition: int | None = None
) -> Letter:
    """The dead letter at ``offset`` (of ``partition``, needed where several have it).

    Raises NotFoundError if there is none, ConfigurationError for a partition
    the topic does not have or an offset found in several partitions.
    """
    name = queue_name(topic)
    queue = await find_queue(broker, topic)
    if queue is None:
        raise NotFoundError(f"no dead letter at offset {offset}: {name} does not exist")
    if partition is not None and not 0 <= partition < queue.partitions:
        raise ConfigurationError(
            f"partition {partition}: {name} has partitions 0-{queue.partitions - 1}"
        )
    candidates = [partition] if partition is not None else range(queue.partitions)
    found = []
    for p in candidates:
        found += [
            m for m in await broker.read(name, after={p: offset}, limit=1) if m.offset == offset
        ]
    if not found:
        where = f"partition {partition}, " if partition is not None else ""
        raise NotFoundError(f"no dead letter at {where}offset {offset} in {name}")
    if len(found) > 1:
        listed = ", ".join(str(m.partition) for m in found)
        raise ConfigurationError(
            f"offset {offset} exists in partitions {listed} of {name}; name the partition"
        )
    return Letter.read(found[0])


@dataclass(frozen=True)
class Redriven:
    moved: int
    skipped: int
    """Messages left in the dead-letter topic: they carry no dead-letter record."""


async def redrive(
    broker: Inspectable, queue: TopicInfo, limit: int | None = None, advance: Advance | None = None
) -> Redriven:
    """Publish the letters of ``queue`` again to their origin topic and remove them.

    At most ``limit``, oldest first. Each chunk moves atomically
    (:meth:`~tidings.inspection.Inspectable.move`): a letter is never both
    redriven and kept, nor lost.
    """
    if limit is not None and limit < 1:
        raise ConfigurationError(f"limit must be at least 1, got {limit}")
    name = queue.name
    moved = skipped = taken = 0
    until = await heads(broker, name, queue.partitions)
    entries: list[tuple[int, int, str, Message]] = []
    messages = stored(broker, name, queue.partitions, until=until)
    async with contextlib.aclosing(messages):
        async for message in messages:
            try:
                record = DeadLetter.from_message(message.message)
            except DecodeError:
                skipped += 1
                continue
            origin = record.origin_topic
            entries.append((message.partition, message.offset, origin, record.original_message()))
            taken += 1
            if taken == limit:
                break
            if len(entries) == CHUNK:
                moved += await _move(broker, name, entries, advance)
    moved += await _move(broker, name, entries, advance)
    return Redriven(moved, skipped)


async def _move(
    broker: Inspectable,
    name: str,
    entries: list[tuple[int, int, str, Message]],
    advance: Advance | None,
) -> int:
    if not entries:
        return 0
    count = await broker.move(name, entries)
    if advance is not None:
        advance(len(entries))
    entries.clear()
    return count


async def stored_letters(broker: Inspectable, queue: TopicInfo) -> list[tuple[int, int]]:
    """(partition, offset) of every letter of ``queue`` stored now: what :func:`purge` takes."""
    until = await heads(broker, queue.name, queue.partitions)
    return [
        (m.partition, m.offset)
        async for m in stored(broker, queue.name, queue.partitions, until=until)
    ]


async def purge(
    broker: Inspectable,
    queue: TopicInfo,
    entries: Sequence[tuple[int, int]],
    advance: Advance | None = None,
) -> int:
    """Delete ``entries`` (from :func:`stored_letters`) from ``queue``; return how many went."""
    deleted = 0
    for start in range(0, len(entries), CHUNK):
        chunk = entries[start : start + CHUNK]
        deleted += await broker.delete(queue.name, chunk)
        if advance is not None:
            advance(len(chunk))
    return deleted
