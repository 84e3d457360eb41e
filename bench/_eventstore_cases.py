"""The event-store benchmark's work, done once through tidings and once through eventsourcing.

Each function does the same work on both sides: the same number of events
of the same shape (an inventory item's ``Reserved``/``Released`` events),
each append checking the stream's version and giving its events a place in
the global order (eventsourcing's *application* recorder, which keeps
notification ids), durable when it returns; and loading one aggregate of
10,000 events by folding them, with or without a snapshot at its last version.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate as EsAggregate
from eventsourcing.domain import event as es_event

from tidings.event import Event
from tidings.eventsourcing import Aggregate, EventStore, Repository, applies

__all__ = [
    "EsInventory",
    "Inventory",
    "SnapshottingApplication",
    "es_aggregate",
    "es_append",
    "es_append_concurrently",
    "tidings_aggregate",
    "tidings_append",
    "tidings_append_concurrently",
]


class Reserved(msgspec.Struct):
    quantity: int


class Released(msgspec.Struct):
    quantity: int


class Inventory(Aggregate):
    source = "/bench/inventory"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.reserved = 0

    def reserve(self, quantity: int) -> None:
        self.emit(Reserved(quantity))

    def release(self, quantity: int) -> None:
        self.emit(Released(quantity))

    @applies(Reserved)
    def _reserved(self, event: Reserved) -> None:
        self.reserved += event.quantity

    @applies(Released)
    def _released(self, event: Released) -> None:
        self.reserved -= event.quantity


class EsInventory(EsAggregate):
    def __init__(self) -> None:
        self.reserved = 0

    @es_event("Reserved")
    def reserve(self, quantity: int) -> None:
        self.reserved += quantity

    @es_event("Released")
    def release(self, quantity: int) -> None:
        self.reserved -= quantity


class SnapshottingApplication(Application[uuid.UUID]):
    is_snapshotting_enabled = True


def _command(item: Any, i: int) -> None:
    if i % 2:
        item.release(1)
    else:
        item.reserve(1)


# -- appends ---------------------------------------------------------------------------


async def tidings_append(store: EventStore, events: int, per_call: int) -> float:
    """Seconds to append ``events`` to one stream, ``per_call`` in each append."""
    stream = f"sku-{uuid.uuid4().hex}"
    version = 0
    start = time.perf_counter()
    for _ in range(events // per_call):
        batch = [
            Event(type="Reserved", source="/bench/inventory", data=Reserved(1))
            for _ in range(per_call)
        ]
        await store.append(stream, batch, version)
        version += per_call
    return time.perf_counter() - start


def es_append(app: Application[uuid.UUID], events: int, per_call: int) -> float:
    """The same through eventsourcing's mapper (encoding) and application recorder."""
    originator = uuid.uuid4()
    mapper, recorder = app.mapper, app.recorder
    version = 0
    start = time.perf_counter()
    for _ in range(events // per_call):
        batch = []
        for _ in range(per_call):
            version += 1
            domain_event = EsInventory.Reserved(  # type: ignore[attr-defined]
                originator_id=originator,
                originator_version=version,
                timestamp=EsInventory.Event.create_timestamp(),
                quantity=1,
            )
            batch.append(mapper.to_stored_event(domain_event))
        recorder.insert_events(batch)
    return time.perf_counter() - start


async def tidings_append_concurrently(store: EventStore, events: int, writers: int) -> float:
    """Seconds for ``writers`` tasks to append ``events`` in all, one per append call."""
    start = time.perf_counter()
    await asyncio.gather(*(tidings_append(store, events // writers, 1) for _ in range(writers)))
    return time.perf_counter() - start


def es_append_concurrently(app: Application[uuid.UUID], events: int, writers: int) -> float:
    """The same with ``writers`` threads."""
    with ThreadPoolExecutor(writers) as pool:
        start = time.perf_counter()
        done = [pool.submit(es_append, app, events // writers, 1) for _ in range(writers)]
        for future in done:
            future.result()
        return time.perf_counter() - start


# -- loads -------------------------------------------------------------------------------


async def tidings_aggregate(
    store: EventStore, events: int, snapshot: bool
) -> Callable[[], Awaitable[float]]:
    """Store an aggregate of ``events`` events; return a function timing one load of it."""
    item = Inventory(f"sku-{uuid.uuid4().hex}")
    writer = Repository(store, Inventory)
    for i in range(events):
        _command(item, i)
        if len(item.pending_events) == 500:
            await writer.save(item)
    await writer.save(item)
    repository = Repository(store, Inventory, snapshot_every=events if snapshot else None)
    if snapshot:
        await repository.load(item.id)  # replays everything once and stores the snapshot

    async def load() -> float:
        start = time.perf_counter()
        loaded = await repository.load(item.id)
        seconds = time.perf_counter() - start
        assert loaded.reserved == item.reserved and loaded.version == events
        return seconds

    return load


def es_aggregate(app: Application[uuid.UUID], events: int, snapshot: bool) -> Callable[[], float]:
    """The same through an eventsourcing application and its repository."""
    item = EsInventory()  # its creation is event 1
    for i in range(events - 1):
        _command(item, i)
        if i % 500 == 498:
            app.save(item)
    app.save(item)
    if snapshot:
        app.take_snapshot(item.id)

    def load() -> float:
        start = time.perf_counter()
        loaded = app.repository.get(item.id)
        seconds = time.perf_counter() - start
        assert loaded.reserved == item.reserved and loaded.version == events
        return seconds

    return load
