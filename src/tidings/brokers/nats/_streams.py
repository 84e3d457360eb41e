"""Names and settings of the JetStream objects behind topics and groups.

A topic is a stream named after it (dots become ``_``) whose subjects are
``<topic>.<partition>``; its partition count is kept in the stream's
description (JSON), so every client and the CLI agree on it. A consumer group
is one durable pull consumer per partition, ``<group>-<partition>``, filtered
on that partition's subject.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime

from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.manager import JetStreamManager

from tidings.errors import ConfigurationError

__all__ = [
    "Topic",
    "consumer_config",
    "consumer_name",
    "create_topic",
    "describe_group",
    "find_topic",
    "group_of",
    "stream_name",
    "token",
    "topic_of",
]

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_BAD_TOPIC = re.compile(r"[\s*>]|^\.|\.$|\.\.")
_MARK = "tidings_topic"


def token(name: str) -> str:
    """``name`` as a NATS name token (stream, consumer, KV key): dots become ``_``.

    Other characters NATS does not allow are replaced too, with a short hash of
    the name appended so that different names stay different.
    """
    flat = name.replace(".", "_")
    if _SAFE.fullmatch(flat):
        return flat
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', flat)}-{digest}"


def stream_name(topic: str) -> str:
    if not topic or _BAD_TOPIC.search(topic):
        raise ConfigurationError(
            f"topic {topic!r} is not a valid NATS subject prefix "
            "(no spaces, '*', '>' or empty dot-separated parts)"
        )
    return token(topic)


def consumer_name(group: str, partition: int) -> str:
    return f"{token(group)}-{partition}"


@dataclass(frozen=True, slots=True)
class Topic:
    """A stream as tidings sees it."""

    name: str
    stream: str
    partitions: int

    def subject(self, partition: int) -> str:
        return f"{self.name}.{partition}"


def topic_of(info: api.StreamInfo, default_partitions: int) -> Topic | None:
    """The tidings topic a stream holds (None for streams tidings did not make)."""
    config = info.config
    try:
        mark = json.loads(config.description or "")
    except ValueError:
        mark = None
    if isinstance(mark, dict) and isinstance(mark.get(_MARK), str):
        return Topic(mark[_MARK], config.name or "", int(mark.get("partitions", 1)))
    subjects = config.subjects or []
    if len(subjects) == 1 and subjects[0].endswith(".*"):
        return Topic(subjects[0][:-2], config.name or "", default_partitions)
    return None


async def find_topic(jsm: JetStreamManager, topic: str, default_partitions: int) -> Topic | None:
    name = stream_name(topic)
    try:
        info = await jsm.stream_info(name)
    except NotFoundError:
        return None
    found = topic_of(info, default_partitions)
    if found is None or found.name != topic:
        raise ConfigurationError(
            f"stream {name!r} exists but does not hold tidings topic {topic!r}"
        )
    return found


async def create_topic(
    jsm: JetStreamManager,
    topic: str,
    partitions: int,
    *,
    replicas: int,
    duplicate_window: float,
    max_age: float | None = None,
    max_bytes: int | None = None,
) -> Topic:
    """Create the stream of ``topic`` (file storage); an existing one is returned as is."""
    name = stream_name(topic)
    config = api.StreamConfig(
        name=name,
        description=json.dumps({_MARK: topic, "partitions": partitions}),
        subjects=[f"{topic}.*"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        max_age=max_age,
        max_bytes=max_bytes,
        allow_direct=True,
    )
    try:
        await jsm.add_stream(config)
    except BadRequestError as exc:
        found = await find_topic(jsm, topic, partitions)
        if found is None:
            raise ConfigurationError(f"cannot create the stream of {topic!r}: {exc}") from exc
        return found
    return Topic(topic, name, partitions)


def describe_group(group: str, partition: int) -> str:
    return json.dumps({"tidings_group": group, "partition": partition})


def group_of(info: api.ConsumerInfo) -> tuple[str, int] | None:
    """``(group, partition)`` of a consumer tidings made, else None."""
    try:
        mark = json.loads(info.config.description or "")
    except ValueError:
        return None
    if isinstance(mark, dict) and isinstance(mark.get("tidings_group"), str):
        return mark["tidings_group"], int(mark.get("partition", 0))
    return None


def consumer_config(
    topic: Topic,
    group: str,
    partition: int,
    *,
    ack_wait: float,
    max_deliver: int | None,
    start: api.DeliverPolicy,
    start_sequence: int | None = None,
    start_time: datetime | None = None,
) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=consumer_name(group, partition),
        description=describe_group(group, partition),
        deliver_policy=start,
        opt_start_seq=start_sequence,
        opt_start_time=start_time,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver if max_deliver is not None else -1,
        filter_subject=topic.subject(partition),
        max_ack_pending=20_000,
        max_waiting=512,
    )
