"""Aggregates and their repository, on SQLite and PostgreSQL: fold, save, conflicts,
snapshots, upcasting, and the events reaching subscribers of the embedded broker."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from tidings import App, event_type
from tidings.errors import ConfigurationError, SchemaError
from tidings.event import Event
from tidings.eventsourcing import (
    Aggregate,
    AggregateNotFound,
    EventStore,
    Repository,
    Snapshot,
    SnapshotStore,
    SqliteEventStore,
    StoredEvent,
    Upcasters,
    VersionConflict,
    applies,
)

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import port_open, service_missing

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class StockAdded(msgspec.Struct):
    quantity: int


@event_type("InventoryReserved", version=2)
@dataclasses.dataclass
class InventoryReserved:
    order_id: str
    quantity: int
    warehouse: str


class InventoryReleased(BaseModel):
    order_id: str
    quantity: int


class OutOfStock(Exception):
    pass


class Inventory(Aggregate):
    source = "/shop/inventory"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.on_hand = 0
        self.reservations: dict[str, int] = {}

    def add_stock(self, quantity: int) -> None:
        self.emit(StockAdded(quantity))

    def reserve(self, order_id: str, quantity: int) -> None:
        if quantity > self.on_hand:
            raise OutOfStock(f"{self.id}: {quantity} wanted, {self.on_hand} on hand")
        self.emit(InventoryReserved(order_id, quantity, "main"))

    def release(self, order_id: str) -> None:
        self.emit(InventoryReleased(order_id=order_id, quantity=self.reservations[order_id]))

    @applies(StockAdded)
    def _stock_added(self, event: StockAdded) -> None:
        self.on_hand += event.quantity

    @applies(InventoryReserved)
    def _reserved(self, event: InventoryReserved) -> None:
        self.on_hand -= event.quantity
        self.reservations[event.order_id] = event.quantity

    @applies(InventoryReleased)
    def _released(self, event: InventoryReleased) -> None:
        self.on_hand += event.quantity
        del self.reservations[event.order_id]


class RecordingStore(SqliteEventStore):
    """A real SQLite store that also notes the versions of the events each load read."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.loaded: list[list[int]] = []

    async def read_from_snapshot(
        self, stream_id: str, snapshot_type: str
    ) -> tuple[Snapshot | None, list[StoredEvent]]:
        snapshot, events = await super().read_from_snapshot(stream_id, snapshot_type)
        self.loaded.append([stored.version for stored in events])
        return snapshot, events


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    if request.param == "sqlite":
        async with SqliteEventStore(str(tmp_path / "shop.db")) as sqlite_store:
            yield sqlite_store
        return
    if not port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL is not running on 127.0.0.1:5432")
    import asyncpg

    from tidings.eventsourcing.postgres import PostgresEventStore

    schema = f"test_agg_{uuid.uuid4().hex[:12]}"
    try:
        async with PostgresEventStore(POSTGRES_URL, schema=schema) as postgres_store:
            yield postgres_store
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def test_commands_emit_events_folded_at_once() -> None:
    item = Inventory("sku-1")
    item.add_stock(5)
    item.reserve("o-1", 2)
    assert (item.on_hand, item.reservations, item.version) == (3, {"o-1": 2}, 2)
    events = item.pending_events
    assert [(e.type, e.subject, e.source, e.schemaversion) for e in events] == [
        ("StockAdded", "sku-1", "/shop/inventory", 1),
        ("InventoryReserved", "sku-1", "/shop/inventory", 2),
    ]
    with pytest.raises(OutOfStock):
        item.reserve("o-2", 4)
    assert item.version == 2 and len(item.pending_events) == 2


def test_an_event_emitted_for_another_carries_its_correlation_and_trace() -> None:
    order = Event(
        type="OrderPlaced",
        source="/shop/orders",
        data={},
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    item = Inventory("sku-1")
    item.add_stock(1)
    reserved = item.emit(InventoryReserved("o-1", 1, "main"), caused_by=order)
    assert (reserved.correlationid, reserved.causationid) == (order.id, order.id)
    trace_id = order.traceparent[3:35] if order.traceparent else None
    assert reserved.traceparent is not None and reserved.traceparent[3:35] == trace_id
    assert (reserved.type, reserved.source, reserved.subject, reserved.schemaversion) == (
        "InventoryReserved",
        "/shop/inventory",
        "sku-1",
        2,
    )


def test_emitting_a_payload_without_an_apply_method_is_refused() -> None:
    class Other(msgspec.Struct):
        n: int

    item = Inventory("sku-1")
    with pytest.raises(ConfigurationError, match=r"no @applies\(Other\)"):
        item.emit(Other(1))
    assert item.version == 0 and item.pending_events == []


def test_an_aggregate_needs_an_id() -> None:
    with pytest.raises(ConfigurationError, match="id"):
        Inventory("")


async def test_save_and_load_restore_the_state(store: EventStore) -> None:
    repository = Repository(store, Inventory)
    item = Inventory("sku-1")
    item.add_stock(10)
    item.reserve("o-1", 3)
    item.reserve("o-2", 4)
    item.release("o-1")
    stored = await repository.save(item)
    assert [s.version for s in stored] == [1, 2, 3, 4]
    assert item.pending_events == []
    loaded = await repository.load("sku-1")
    assert (loaded.on_hand, loaded.reservations, loaded.version) == (6, {"o-2": 4}, 4)
    assert await repository.save(loaded) == []


async def test_a_stale_aggregate_cannot_be_saved(store: EventStore) -> None:
    repository = Repository(store, Inventory)
    item = Inventory("sku-1")
    item.add_stock(5)
    await repository.save(item)
    first, second = await repository.load("sku-1"), await repository.load("sku-1")
    first.reserve("o-1", 5)
    second.reserve("o-2", 5)
    await repository.save(first)
    with pytest.raises(VersionConflict):
        await repository.save(second)
    again = await repository.load("sku-1")
    assert (again.on_hand, again.reservations) == (0, {"o-1": 5})


async def test_a_new_aggregate_whose_id_is_taken_cannot_be_saved(store: EventStore) -> None:
    repository = Repository(store, Inventory)
    first, second = Inventory("sku-1"), Inventory("sku-1")
    first.add_stock(1)
    second.add_stock(2)
    await repository.save(first)
    with pytest.raises(VersionConflict):
        await repository.save(second)
    assert (await repository.load("sku-1")).on_hand == 1


async def test_loading_an_unknown_aggregate_raises(store: EventStore) -> None:
    with pytest.raises(AggregateNotFound, match="no Inventory with id 'nobody'"):
        await Repository(store, Inventory).load("nobody")


async def test_snapshots_every_n_events_and_loads_start_from_them(tmp_path: Path) -> None:
    async with RecordingStore(str(tmp_path / "es.db")) as store:
        repository = Repository(store, Inventory, snapshot_every=10)
        item = Inventory("sku-1")
        item.add_stock(100)
        await repository.save(item)
        for i in range(24):  # versions 2..25: snapshots at 10 and 20
            item.reserve(f"o-{i}", 1)
            await repository.save(item)
        snapshot = await store.load_snapshot("sku-1")
        assert snapshot is not None and snapshot.version == 20
        store.loaded.clear()
        loaded = await repository.load("sku-1")
        assert store.loaded == [[21, 22, 23, 24, 25]]
        assert (loaded.on_hand, len(loaded.reservations), loaded.version) == (76, 24, 25)
        plain = await Repository(store, Inventory).load("sku-1")
        assert (plain.on_hand, plain.reservations) == (loaded.on_hand, loaded.reservations)


async def test_a_long_history_without_snapshot_gets_one_on_load(store: EventStore) -> None:
    item = Inventory("sku-1")
    for _ in range(30):
        item.add_stock(1)
    await Repository(store, Inventory).save(item)  # no snapshots yet
    repository = Repository(store, Inventory, snapshot_every=10)
    await repository.load("sku-1")
    assert isinstance(store, SnapshotStore)
    snapshot = await store.load_snapshot("sku-1")
    assert snapshot is not None and snapshot.version == 30
    assert (await repository.load("sku-1")).on_hand == 30


async def test_a_snapshot_of_another_shape_is_ignored(store: EventStore) -> None:
    repository = Repository(store, Inventory, snapshot_every=2)
    item = Inventory("sku-1")
    item.add_stock(3)
    item.add_stock(4)
    await repository.save(item)

    class InventoryV2(Inventory):
        snapshot_version = 2

        def restore_state(self, state: bytes) -> None:  # pragma: no cover - must not run
            raise AssertionError("an old snapshot was restored")

    loaded = await Repository(store, InventoryV2, snapshot_every=2).load("sku-1")
    assert loaded.on_hand == 7


async def test_old_event_versions_are_upcast_on_load(store: EventStore) -> None:
    old = Event(
        type="InventoryReserved",
        source="/shop/inventory",
        data={"order": "o-1", "qty": 2},
        schemaversion=1,
    )
    await store.append("sku-1", [Event(type="StockAdded", source="/s", data={"quantity": 5})], 0)
    await store.append("sku-1", [old], 1)
    with pytest.raises(
        SchemaError, match="no upcaster lifts InventoryReserved from version 1 to 2"
    ):
        await Repository(store, Inventory).load("sku-1")
    upcasters = Upcasters()

    @upcasters.register("InventoryReserved", from_version=1)
    def rename(data: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": data["order"], "quantity": data["qty"], "warehouse": "main"}

    loaded = await Repository(store, Inventory, upcasters=upcasters).load("sku-1")
    assert (loaded.on_hand, loaded.reservations) == (3, {"o-1": 2})
    (stored,) = await store.read("sku-1", start=2)
    assert stored.event.data == {"order": "o-1", "qty": 2}  # the stored event is unchanged


async def test_a_newer_event_version_than_the_code_knows_is_refused(store: EventStore) -> None:
    future = Event(type="StockAdded", source="/s", data={"quantity": 1}, schemaversion=3)
    await store.append("sku-1", [future], 0)
    with pytest.raises(SchemaError, match="newer than this code reads"):
        await Repository(store, Inventory).load("sku-1")


async def test_an_event_type_without_apply_method_is_refused_on_load(store: EventStore) -> None:
    await store.append("sku-1", [Event(type="Mystery", source="/s", data={})], 0)
    with pytest.raises(SchemaError, match="no apply method for event type 'Mystery'"):
        await Repository(store, Inventory).load("sku-1")


def test_upcasters_refuse_a_second_step_from_one_version() -> None:
    upcasters = Upcasters()
    upcasters.add("T", 1, lambda data: data)
    with pytest.raises(ConfigurationError, match="registered already"):
        upcasters.add("T", 1, lambda data: data)
    with pytest.raises(ConfigurationError, match="from_version"):
        upcasters.register("T", from_version=0)


def test_repository_arguments_are_checked(tmp_path: Path) -> None:
    store = SqliteEventStore(str(tmp_path / "x.db"))
    with pytest.raises(ConfigurationError, match="not an Aggregate"):
        Repository(store, dict)  # type: ignore[type-var]
    with pytest.raises(ConfigurationError, match="snapshot_every"):
        Repository(store, Inventory, snapshot_every=0)


async def test_saved_events_reach_subscribers_of_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shop.db"
    app = App("shipping", broker=url)
    seen: list[tuple[str, int, str | None]] = []
    done = asyncio.Event()

    @app.subscribe("inventory", group="shipping")
    async def on_event(event: Event) -> None:
        seen.append((event.type, event.data["quantity"], event.subject))
        if len(seen) == 2:
            done.set()

    async with app, SqliteEventStore.from_url(url, topic="inventory") as store:
        item = Inventory("sku-9")
        item.add_stock(5)
        item.reserve("o-1", 2)
        await Repository(store, Inventory).save(item)
        await asyncio.wait_for(done.wait(), 10)
    assert seen == [("StockAdded", 5, "sku-9"), ("InventoryReserved", 2, "sku-9")]
