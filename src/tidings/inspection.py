"""Looking into a broker without consuming: topics, groups and lag, stored messages.

Operational tools (the CLI's ``topics``, ``groups``, ``tail`` and ``dlq``
commands) use brokers that implement :class:`Inspectable`; reading this way
never joins or moves a consumer group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tidings.broker import Message

__all__ = [
    "GroupAdmin",
    "GroupInfo",
    "Inspectable",
    "LocalStorage",
    "PartitionLag",
    "ReadOnly",
    "StoredMessage",
    "TopicInfo",
]


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    events: int
    """Messages stored now (after retention)."""
    bytes: int
    retention_seconds: float | None
    retention_bytes: int | None
    compact: bool
    rate: float
    """Messages per second published over the last minute."""


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    head: int
    owner: str | None

    @property
    def lag(self) -> int:
        return max(self.head - self.committed, 0)


@dataclass(frozen=True)
class GroupInfo:
    name: str
    members: list[str]
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class StoredMessage:
    topic: str
    partition: int
    offset: int
    published_at: float
    message: Message


@runtime_checkable
class Inspectable(Protocol):
    """A broker whose stored messages and group positions can be read and administered."""

    async def list_topics(self) -> list[TopicInfo]:
        """Every topic, with counts, retention and recent rate."""

    async def list_groups(self) -> list[GroupInfo]:
        """Every consumer group, with members and per-partition lag."""

    async def read(
        self,
        topic: str,
        *,
        after: Mapping[int, int] | None = None,
        last: int | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        """Stored messages of ``topic`` in publish order, without joining a group.

        ``after``: per partition, the first offset to read; ``last``: only the
        newest N messages. Returns at most ``limit``.
        """

    async def delete(self, topic: str, entries: Sequence[tuple[int, int]]) -> int:
        """Remove messages (partition, offset) from ``topic``; return how many went."""

    async def move(self, topic: str, entries: Sequence[tuple[int, int, str, Message]]) -> int:
        """Atomically publish each message to its target topic and remove the originals.

        ``entries``: (partition, offset, target topic, message). Used to redrive
        dead letters. Returns how many were moved.
        """


@runtime_checkable
class LocalStorage(Protocol):
    """A broker keeping its data in local storage that ``connect`` creates (a file).

    Operational commands ask first, so that a mistyped path is reported rather
    than created empty.
    """

    def missing_storage(self) -> str | None:
        """Where the storage would be (for a message) if it does not exist yet, else None."""


@runtime_checkable
class GroupAdmin(Protocol):
    """A broker that can delete what it stores for a consumer group."""

    async def delete_group(self, name: str) -> bool:
        """Forget group ``name``, so that a new group of that name starts afresh.

        Removes its positions and whatever else the broker keeps for it
        (assignments, scheduled retries, exactly-once records, members).
        Returns False if there is no such group. Raises
        :class:`~tidings.errors.GroupInUseError`, deleting nothing, while the
        group has live members.
        """


@runtime_checkable
class ReadOnly(Protocol):
    """A broker that can be connected for reading only (inspection of read-only storage)."""

    def open_read_only(self) -> None:
        """Before ``connect``: open the storage read-only; writing then raises."""
