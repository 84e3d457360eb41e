"""What happened in a run, read back from the workers' logs and from the broker.

Logs are read whole lines only: a line cut short by a kill was never
finished, so it neither acknowledged a publish nor recorded a handling.
The broker is read through :class:`~tidings.inspection.Inspectable`, so any
broker that implements it can be checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tidings.broker import Broker, WireFormat
from tidings.codec import Codec
from tidings.inspection import Inspectable, StoredMessage

__all__ = [
    "Handling",
    "History",
    "Lag",
    "Published",
    "group_lag",
    "identities",
    "read_handlings",
    "read_published",
    "read_topic",
]


@dataclass(frozen=True)
class Published:
    event: str
    """``PRODUCER:n``."""
    key: str
    acknowledged: bool

    @property
    def producer(self) -> str:
        return self.event.rpartition(":")[0]

    @property
    def n(self) -> int:
        return int(self.event.rpartition(":")[2])


@dataclass(frozen=True)
class Handling:
    event: str
    key: str
    attempt: int
    pid: int
    at: int
    """Wall clock, nanoseconds (all workers run on this machine)."""
    position: str


@dataclass(frozen=True)
class Lag:
    total: int
    """Messages not yet consumed by the group, in partitions with a position."""
    unpositioned: int
    """Partitions of the topic where the group has no position."""

    @property
    def zero(self) -> bool:
        return self.total == 0 and self.unpositioned == 0


@dataclass(frozen=True)
class History:
    published: list[Published]
    handlings: list[Handling]
    stored: list[str]
    """Events found in the input topic at the end, in storage order."""
    effects: list[str] | None
    """Events whose effect is in the output topic (None: not exactly-once)."""
    lag: Lag
    dead_lettered: list[str] = field(default_factory=list)
    """Events found in the input topic's dead-letter queue (shown in the report: an event
    dead-lettered without a handling explains a "lost" one)."""


def _lines(path: Path) -> Iterator[list[str]]:
    with path.open(errors="replace") as file:
        for line in file:
            if line.endswith("\n"):
                yield line.split()


def read_published(logs: list[Path]) -> list[Published]:
    return [
        Published(event, key, flag == "A")
        for log in logs
        if log.exists()
        for flag, event, key in _lines(log)
    ]


def read_handlings(logs: list[Path]) -> list[Handling]:
    return [
        Handling(event, key, int(attempt), int(pid), int(at), position)
        for log in logs
        if log.exists()
        for event, key, attempt, pid, at, position in _lines(log)
    ]


async def _partitions(broker: Inspectable, topic: str) -> int:
    for info in await broker.list_topics():
        if info.name == topic:
            return info.partitions
    return 0


async def read_topic(broker: Broker, topic: str) -> list[StoredMessage]:
    """Every message stored in ``topic``, partition by partition, in offset order.

    One partition per ``read``: a page over several partitions is ordered by
    publish time and cut at ``limit``, which is not a prefix of each
    partition when publish times and offsets disagree (several processes
    publishing make them disagree).
    """
    assert isinstance(broker, Inspectable)
    stored: list[StoredMessage] = []
    for partition in range(await _partitions(broker, topic)):
        position = 0
        while page := await broker.read(topic, after={partition: position}, limit=1000):
            stored.extend(m for m in page if m.partition == partition)
            position = max(m.offset for m in page) + 1
    stored.sort(key=lambda m: (m.partition, m.offset))
    return stored


def identities(broker: Broker, stored: list[StoredMessage]) -> list[str]:
    """The ``PRODUCER:n`` each stored input event is, or each effect is for."""
    codec = broker.default_codec() if isinstance(broker, WireFormat) else Codec()
    out = []
    for message in stored:
        data = codec.decode(message.message.value, message.message.headers).data
        assert isinstance(data, dict), data
        out.append(str(data["event"]) if "event" in data else f"{data['producer']}:{data['n']}")
    return out


async def group_lag(broker: Broker, group: str, topic: str) -> Lag:
    assert isinstance(broker, Inspectable)
    partitions = await _partitions(broker, topic)
    positioned: dict[int, int] = {}
    for info in await broker.list_groups():
        if info.name == group:
            positioned = {p.partition: p.lag for p in info.partitions if p.topic == topic}
    return Lag(sum(positioned.values()), partitions - len(positioned))
