"""Event sourcing on tidings: an event store, aggregates and their repository.

The store keeps each aggregate's events as a stream, with optimistic
concurrency and a global order, and publishes what it stores to the bus in
the same transaction. Backends: a SQLite file (:class:`SqliteEventStore`)
and PostgreSQL (``tidings.eventsourcing.postgres``, extra ``tidings[postgres]``).
"""

from __future__ import annotations

from tidings.eventsourcing._from_url import event_store_from_url
from tidings.eventsourcing._sqlite import SqliteEventStore
from tidings.eventsourcing.aggregate import Aggregate, applies
from tidings.eventsourcing.repository import AggregateNotFound, Repository
from tidings.eventsourcing.store import (
    EventStore,
    Snapshot,
    SnapshotStore,
    StoredEvent,
    TopicFor,
    VersionConflict,
)
from tidings.eventsourcing.upcasting import Upcaster, Upcasters

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "EventStore",
    "Repository",
    "Snapshot",
    "SnapshotStore",
    "SqliteEventStore",
    "StoredEvent",
    "TopicFor",
    "Upcaster",
    "Upcasters",
    "VersionConflict",
    "applies",
    "event_store_from_url",
]
