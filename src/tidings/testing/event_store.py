"""The event-store conformance suite: one set of tests every backend passes.

Subclass :class:`EventStoreConformance` and give it two fixtures:

``store_factory``
    a callable creating a new, unconnected store of one shared backend
    (several stores stand for several processes).
``published``
    an async callable returning what the backend has published so far, as
    ``(topic, key, encoded event)`` in publish order (the embedded broker's
    log, or the outbox table).

::

    class TestSqliteEventStore(EventStoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda: SqliteEventStore(str(tmp_path / "es.db"))
        ...

Requires pytest and pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.eventsourcing.store import EventStore, Snapshot, SnapshotStore, VersionConflict

__all__ = ["EventStoreConformance", "Published", "StoreFactory"]

StoreFactory = Callable[[], EventStore]
#: What a backend published: (topic, key, encoded event), oldest first.
Published = Callable[[], Awaitable[list[tuple[str, str | None, bytes]]]]


def _events(n: int, type: str = "Counted") -> list[Event]:
    return [Event(type=type, source="/conformance", data={"n": i}) for i in range(n)]


@dataclasses.dataclass
class _Dataclass:
    sku: str
    quantity: int


class _Struct(msgspec.Struct):
    sku: str
    quantity: int


class _Model(BaseModel):
    sku: str
    quantity: int


class EventStoreConformance:
    """The suite. Subclass it and provide ``store_factory`` and ``published``."""

    @pytest.fixture
    def store_factory(self) -> StoreFactory:  # pragma: no cover - overridden
        raise NotImplementedError("subclass EventStoreConformance and define store_factory")

    @pytest.fixture
    def published(self) -> Published:  # pragma: no cover - overridden
        raise NotImplementedError("subclass EventStoreConformance and define published")

    @pytest.fixture
    async def open_store(self, store_factory: StoreFactory) -> AsyncIterator[Callable[[], Any]]:
        opened: list[EventStore] = []

        async def open_one() -> EventStore:
            store = store_factory()
            await store.connect()
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            await store.close()

    @pytest.fixture
    async def store(self, open_store: Callable[[], Awaitable[EventStore]]) -> EventStore:
        return await open_store()

    # -- appending -----------------------------------------------------------------

    async def test_append_numbers_versions_and_positions(self, store: EventStore) -> None:
        stored = await store.append("order-1", _events(3), 0)
        assert [(s.stream_id, s.version) for s in stored] == [("order-1", v) for v in (1, 2, 3)]
        positions = [s.position for s in stored]
        assert positions == sorted(positions) and len(set(positions)) == 3
        more = await store.append("order-1", _events(2), 3)
        assert [s.version for s in more] == [4, 5]
        assert more[0].position > positions[-1]
        assert await store.last_position() == more[-1].position

    async def test_wrong_expected_version_raises_and_stores_nothing(
        self, store: EventStore, published: Published
    ) -> None:
        await store.append("order-1", _events(2), 0)
        before = await published()
        for expected in (0, 1, 3):
            with pytest.raises(VersionConflict) as info:
                await store.append("order-1", _events(2, "Late"), expected)
            assert (info.value.stream_id, info.value.expected, info.value.actual) == (
                "order-1",
                expected,
                2,
            )
        assert [s.event.type for s in await store.read("order-1")] == ["Counted"] * 2
        assert await published() == before

    async def test_no_expected_version_appends_whatever_the_version(
        self, store: EventStore
    ) -> None:
        await store.append("s", _events(2), None)
        stored = await store.append("s", _events(1), None)
        assert stored[0].version == 3

    async def test_empty_append_checks_the_version_and_stores_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("s", _events(1), 0)
        assert await store.append("s", [], 1) == []
        with pytest.raises(VersionConflict):
            await store.append("s", [], 0)
        assert len(await store.read("s")) == 1

    async def test_bad_arguments_raise_configuration_errors(self, store: EventStore) -> None:
        with pytest.raises(ConfigurationError, match="stream_id"):
            await store.append("", _events(1), 0)
        with pytest.raises(ConfigurationError, match="expected_version"):
            await store.append("s", _events(1), -1)
        with pytest.raises(ConfigurationError, match="Event"):
            await store.append("s", [{"type": "x"}], 0)  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match="start"):
            await store.read("s", start=-2)
        assert await store.read("s") == []

    # -- what is stored ----------------------------------------------------------------

    async def test_events_keep_their_cloudevents_attributes(self, store: EventStore) -> None:
        event = Event(
            type="InventoryReserved",
            source="/shop/inventory",
            data={"sku": "A-1", "quantity": 2},
            time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            correlationid="c-1",
            schemaversion=2,
            extensions={"tenant": "acme"},
        )
        (appended,) = await store.append("sku-A-1", [event], 0)
        assert appended.event == event.replace(subject="sku-A-1")
        (read,) = await store.read("sku-A-1")
        assert read == appended

    async def test_payload_types_are_stored_as_json(self, store: EventStore) -> None:
        payloads = [_Dataclass("A", 1), _Struct("B", 2), _Model(sku="C", quantity=3)]
        events = [Event(type="Reserved", source="/shop", data=p) for p in payloads]
        await store.append("s", events, 0)
        read = await store.read("s")
        assert [s.event.data for s in read] == [
            {"sku": "A", "quantity": 1},
            {"sku": "B", "quantity": 2},
            {"sku": "C", "quantity": 3},
        ]

    async def test_stored_events_survive_reconnecting(
        self, open_store: Callable[[], Awaitable[EventStore]]
    ) -> None:
        first = await open_store()
        stored = await first.append("s", _events(3), 0)
        await first.close()
        second = await open_store()
        assert await second.read("s") == stored

    # -- reading a stream ------------------------------------------------------------------

    async def test_read_forward_from_a_version(self, store: EventStore) -> None:
        await store.append("s", _events(10), 0)
        await store.append("other", _events(3), 0)
        assert [s.version for s in await store.read("s")] == list(range(1, 11))
        assert [s.version for s in await store.read("s", start=7)] == [7, 8, 9, 10]
        assert [s.version for s in await store.read("s", start=3, limit=2)] == [3, 4]
        assert await store.read("s", start=11) == []
        assert [s.event.data["n"] for s in await store.read("s", limit=3)] == [0, 1, 2]

    async def test_read_backward_from_a_version(self, store: EventStore) -> None:
        await store.append("s", _events(10), 0)
        assert [s.version for s in await store.read("s", backward=True, limit=3)] == [10, 9, 8]
        assert [s.version for s in await store.read("s", start=4, backward=True)] == [4, 3, 2, 1]
        assert await store.read("s", start=0, backward=True) == []

    async def test_unknown_stream_reads_empty(self, store: EventStore) -> None:
        assert await store.read("nobody") == []
        assert await store.read("nobody", backward=True) == []

    # -- the global order ------------------------------------------------------------------

    async def test_read_all_in_global_order_from_a_position(self, store: EventStore) -> None:
        a = await store.append("a", _events(2), 0)
        b = await store.append("b", _events(2), 0)
        c = await store.append("a", _events(1), 2)
        everything = a + b + c
        assert await store.read_all() == everything
        assert await store.read_all(after=a[-1].position) == b + c
        assert await store.read_all(after=a[0].position, limit=2) == [a[1], b[0]]
        assert await store.read_all(after=c[-1].position) == []

    async def test_catch_up_misses_nothing_while_writers_append(
        self, open_store: Callable[[], Awaitable[EventStore]]
    ) -> None:
        writers = [await open_store() for _ in range(8)]
        reader = await open_store()
        done = asyncio.Event()
        appended: list[tuple[str, int]] = []

        async def write(store: EventStore, name: str) -> None:
            for i in range(60):
                stored = await store.append(name, _events(1 + i % 3), None)
                appended.extend((s.stream_id, s.version) for s in stored)

        async def catch_up() -> list[tuple[str, int]]:
            seen: list[tuple[str, int]] = []
            position = 0
            while True:
                finished = done.is_set()
                batch = await reader.read_all(after=position, limit=50)
                for stored in batch:
                    assert stored.position > position
                    position = stored.position
                    seen.append((stored.stream_id, stored.version))
                if finished and not batch:
                    return seen
                if not batch:
                    await asyncio.sleep(0.001)

        reading = asyncio.create_task(catch_up())
        try:
            await asyncio.gather(*(write(w, f"stream-{i % 2}") for i, w in enumerate(writers)))
        finally:
            done.set()
        seen = await reading
        assert sorted(seen) == sorted(appended)
        assert len(seen) == len(set(seen))

    # -- concurrency ---------------------------------------------------------------------

    async def test_racing_appends_on_one_version_one_wins(
        self, open_store: Callable[[], Awaitable[EventStore]]
    ) -> None:
        stores = [await open_store() for _ in range(3)]
        await stores[0].append("s", _events(1), 0)
        results = await asyncio.gather(
            *(store.append("s", _events(1, f"T{i}"), 1) for i, store in enumerate(stores * 2)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, VersionConflict) for r in losers)
        assert [s.version for s in await stores[1].read("s")] == [1, 2]

    async def test_concurrent_appends_to_different_streams_all_land(
        self, open_store: Callable[[], Awaitable[EventStore]]
    ) -> None:
        store_a, store_b = await open_store(), await open_store()
        await asyncio.gather(
            *((store_a if i % 2 else store_b).append(f"s{i}", _events(2), 0) for i in range(20))
        )
        everything = await store_a.read_all(limit=100)
        assert len(everything) == 40
        assert [s.position for s in everything] == sorted({s.position for s in everything})

    # -- publishing ------------------------------------------------------------------------

    async def test_appended_events_are_published_with_the_append(
        self, store: EventStore, published: Published
    ) -> None:
        before = len(await published())
        first = await store.append("order-7", _events(3), 0)
        second = await store.append("order-8", _events(1), 0)
        out = (await published())[before:]
        codec = Codec()
        assert [(key, codec.decode(value)) for _, key, value in out] == [
            (s.stream_id, s.event) for s in first + second
        ]
        assert {topic for topic, _, _ in out} == {"events"}

    # -- snapshots ------------------------------------------------------------------------

    async def test_snapshots_keep_the_latest(self, store: EventStore) -> None:
        assert isinstance(store, SnapshotStore)
        assert await store.load_snapshot("s") is None
        await store.save_snapshot(Snapshot("s", 10, "Thing/v1", b'{"n":10}'))
        await store.save_snapshot(Snapshot("s", 20, "Thing/v1", b'{"n":20}'))
        await store.save_snapshot(Snapshot("s", 15, "Thing/v1", b'{"n":15}'))
        assert await store.load_snapshot("s") == Snapshot("s", 20, "Thing/v1", b'{"n":20}')
        assert await store.load_snapshot("t") is None

    async def test_read_from_snapshot_returns_the_events_after_it(self, store: EventStore) -> None:
        assert isinstance(store, SnapshotStore)
        stored = await store.append("s", _events(5), 0)
        assert await store.read_from_snapshot("s", "Thing/v1") == (None, stored)
        snapshot = Snapshot("s", 3, "Thing/v1", b"{}")
        await store.save_snapshot(snapshot)
        assert await store.read_from_snapshot("s", "Thing/v1") == (snapshot, stored[3:])
        assert await store.read_from_snapshot("s", "Thing/v2") == (None, stored)
        assert await store.read_from_snapshot("nobody", "Thing/v1") == (None, [])
