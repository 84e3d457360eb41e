"""The event store contract: streams of events per aggregate, and one global order.

A *stream* is the history of one aggregate, named by its id. Its events are
numbered 1, 2, 3... (the *version*); every stored event also gets a *position*
in the store's one global order, for catch-up readers.

Rules every backend keeps (and :class:`tidings.testing.event_store.EventStoreConformance`
checks):

- ``append(stream_id, events, expected_version=n)`` stores the events as
  versions ``n+1...`` only if the stream's last version is ``n`` (0: the
  stream must not exist yet); otherwise it raises :class:`VersionConflict`
  and stores nothing. ``expected_version=None`` appends whatever the version.
  An append is all or nothing, and is durable when it returns.
- Positions grow in commit order: a reader that has seen position ``p``
  never later finds an event with a position at or below ``p``. So
  ``read_all(after=p)`` in a loop catches up without missing anything.
- Appended events are published to the bus in the same transaction as they
  are stored (never one without the other): on the embedded broker natively,
  into its topic log; elsewhere into the outbox table
  (:mod:`tidings.eventsourcing._outbox_table`) that a relay forwards.
- Events keep their CloudEvents attributes; ``subject`` is the stream id.
- Methods are safe to call from concurrent tasks of one event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from tidings.errors import ConcurrencyError, ConfigurationError
from tidings.event import Event

__all__ = [
    "EventStore",
    "Snapshot",
    "SnapshotStore",
    "StoredEvent",
    "TopicFor",
    "VersionConflict",
]

#: The topic an appended event is published to: one name, or a function of the event.
TopicFor = str | Callable[[Event], str]


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as the store keeps it: where it is in its stream and in the global order."""

    stream_id: str
    version: int
    position: int
    event: Event


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """An aggregate's state as of ``version`` of its stream, encoded by the aggregate."""

    stream_id: str
    version: int
    #: Names the encoding of ``state`` (the aggregate's snapshot type and version).
    type: str
    state: bytes


class VersionConflict(ConcurrencyError):
    """An append expected the stream at one version and found it at another."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, not {expected} as expected: "
            "someone else appended first; load it again and retry the command"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@runtime_checkable
class EventStore(Protocol):
    """Streams of events with optimistic concurrency and a global order (see the module)."""

    async def connect(self) -> None:
        """Open connections and create the tables if needed; idempotent."""

    async def close(self) -> None:
        """Close the connections; idempotent."""

    async def append(
        self, stream_id: str, events: Sequence[Event], expected_version: int | None
    ) -> list[StoredEvent]:
        """Store ``events`` at the end of the stream; return them as stored.

        Each event's ``subject`` becomes ``stream_id``. Raises
        :class:`VersionConflict` when the stream is not at ``expected_version``.
        """
        ...

    async def read(
        self,
        stream_id: str,
        *,
        start: int | None = None,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """A stream's events from version ``start`` on (backward: down from it).

        ``start`` defaults to the first event (backward: the last). An unknown
        stream reads as empty.
        """
        ...

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events of all streams with a position above ``after``, in order."""
        ...

    async def last_position(self) -> int:
        """The position of the newest event stored (0 when there is none)."""
        ...


@runtime_checkable
class SnapshotStore(Protocol):
    """The latest snapshot per stream (a cache: losing one only costs a longer replay)."""

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless one of a later version is stored already."""

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        """The latest snapshot of the stream, or None."""
        ...

    async def read_from_snapshot(
        self, stream_id: str, snapshot_type: str
    ) -> tuple[Snapshot | None, list[StoredEvent]]:
        """The latest snapshot of ``snapshot_type`` and the stream's events after it, in one read.

        A snapshot of another type counts as none: then every event is returned.
        """
        ...


def check_append(stream_id: str, events: Sequence[Event], expected_version: int | None) -> None:
    """Raise ConfigurationError for arguments no backend can store."""
    if not isinstance(stream_id, str) or not stream_id:
        raise ConfigurationError(f"stream_id must be a non-empty string, got {stream_id!r}")
    if expected_version is not None and (
        not isinstance(expected_version, int)
        or isinstance(expected_version, bool)
        or expected_version < 0
    ):
        raise ConfigurationError(
            f"expected_version must be an integer >= 0 (0: a new stream) or None, "
            f"got {expected_version!r}"
        )
    for event in events:
        if not isinstance(event, Event):
            raise ConfigurationError(
                f"append takes tidings.Event values, got {type(event).__name__}"
            )


def check_read(start: int | None, limit: int | None) -> None:
    if start is not None and (not isinstance(start, int) or isinstance(start, bool) or start < 0):
        raise ConfigurationError(f"start must be a version >= 0 or None, got {start!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ConfigurationError(f"limit must be an integer >= 0 or None, got {limit!r}")


def topic_function(topic: TopicFor | None) -> Callable[[Event], str] | None:
    """``topic`` as a function of the event (None: appended events are not published)."""
    if topic is None or callable(topic):
        return topic
    if not isinstance(topic, str) or not topic:
        raise ConfigurationError(f"topic must be a non-empty string or a function, got {topic!r}")
    name = topic

    def constant(_event: Event) -> str:
        return name

    return constant
