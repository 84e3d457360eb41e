"""The repository: load an aggregate from its stream, save what it emitted.

With ``snapshot_every=N`` it stores a snapshot whenever an aggregate's
version crosses a multiple of N (on save, or on a load that replayed N
events or more), and loads start from the latest snapshot: the cost of a
load stays about that of N events however long the history grows.
Snapshots are a cache: one of another ``snapshot_type`` is ignored.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from tidings.errors import ConfigurationError, TidingsError
from tidings.eventsourcing.aggregate import Aggregate
from tidings.eventsourcing.store import EventStore, Snapshot, SnapshotStore, StoredEvent
from tidings.eventsourcing.upcasting import Upcasters

__all__ = ["AggregateNotFound", "Repository"]

A = TypeVar("A", bound=Aggregate)


class AggregateNotFound(TidingsError, LookupError):
    """No events are stored for this aggregate id."""

    def __init__(self, aggregate_type: type[Aggregate], aggregate_id: str) -> None:
        super().__init__(f"no {aggregate_type.__name__} with id {aggregate_id!r} is stored")
        self.aggregate_id = aggregate_id


class Repository(Generic[A]):
    """Loads and saves aggregates of one type in an event store.

    ``upcasters``: applied to old event versions on load. ``snapshot_every``:
    None for no snapshots (the store must be a SnapshotStore otherwise).
    """

    def __init__(
        self,
        store: EventStore,
        aggregate_type: type[A],
        *,
        snapshot_every: int | None = None,
        upcasters: Upcasters | None = None,
    ) -> None:
        if not (isinstance(aggregate_type, type) and issubclass(aggregate_type, Aggregate)):
            raise ConfigurationError(f"{aggregate_type!r} is not an Aggregate subclass")
        if snapshot_every is not None:
            if not isinstance(snapshot_every, int) or snapshot_every < 1:
                raise ConfigurationError(
                    f"snapshot_every must be an integer >= 1 or None, got {snapshot_every!r}"
                )
            if not isinstance(store, SnapshotStore):
                raise ConfigurationError(f"{store!r} cannot store snapshots")
        self.store = store
        self.aggregate_type = aggregate_type
        self.snapshot_every = snapshot_every
        self.upcasters = upcasters

    async def load(self, aggregate_id: str) -> A:
        """The aggregate as of its last stored event; AggregateNotFound if it has none."""
        aggregate = self.aggregate_type(aggregate_id)
        if self.snapshot_every is None:
            snapshot, events = None, await self.store.read(aggregate_id)
        else:
            assert isinstance(self.store, SnapshotStore)
            snapshot, events = await self.store.read_from_snapshot(
                aggregate_id, self.aggregate_type.snapshot_type()
            )
        if snapshot is not None:
            aggregate.restore_state(snapshot.state)
            aggregate.version = snapshot.version
        if not events and snapshot is None:
            raise AggregateNotFound(self.aggregate_type, aggregate_id)
        aggregate.replay(events, self.upcasters)
        if self.snapshot_every is not None and len(events) >= self.snapshot_every:
            await self._save_snapshot(aggregate)
        return aggregate

    async def save(self, aggregate: A) -> list[StoredEvent]:
        """Append the aggregate's pending events, expecting no one else appended since.

        Raises :class:`~tidings.eventsourcing.VersionConflict` when someone did:
        load the aggregate again and retry the command.
        """
        if not isinstance(aggregate, self.aggregate_type):
            raise ConfigurationError(
                f"this repository saves {self.aggregate_type.__name__}, "
                f"not {type(aggregate).__name__}"
            )
        events = aggregate.pending_events
        if not events:
            return []
        before = aggregate.version - len(events)
        stored = await self.store.append(aggregate.id, events, before)
        aggregate.mark_saved()
        every = self.snapshot_every
        if every is not None and aggregate.version // every > before // every:
            await self._save_snapshot(aggregate)
        return stored

    async def _save_snapshot(self, aggregate: A) -> None:
        assert isinstance(self.store, SnapshotStore)
        state = aggregate.snapshot_state()
        snapshot = Snapshot(aggregate.id, aggregate.version, aggregate.snapshot_type(), state)
        await self.store.save_snapshot(snapshot)
