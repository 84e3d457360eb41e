"""The event-store conformance suite on SQLite (broker and outbox modes) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tidings.brokers.sqlite import SqliteBroker
from tidings.eventsourcing import SqliteEventStore
from tidings.testing.event_store import EventStoreConformance, Published

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import port_open, service_missing

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class TestSqliteEventStoreOnTheBroker(EventStoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], SqliteEventStore]:
        return lambda: SqliteEventStore(str(tmp_path / "shop.db"))

    @pytest.fixture
    async def published(self, tmp_path: Path) -> AsyncIterator[Published]:
        broker = SqliteBroker(str(tmp_path / "shop.db"))
        await broker.connect()

        async def read() -> list[tuple[str, str | None, bytes]]:
            names = [t.name for t in await broker.list_topics()]
            stored = [m for name in names for m in await broker.read(name, limit=10_000)]
            stored.sort(key=lambda m: (m.published_at, m.partition, m.offset))
            return [(m.topic, m.message.key, m.message.value) for m in stored]

        yield read
        await broker.close()


class TestSqliteEventStoreWithOutbox(EventStoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[], SqliteEventStore]:
        return lambda: SqliteEventStore(str(tmp_path / "es.db"), publish="outbox")

    @pytest.fixture
    def published(self, tmp_path: Path) -> Published:
        async def read() -> list[tuple[str, str | None, bytes]]:
            with sqlite3.connect(tmp_path / "es.db") as conn:
                rows = conn.execute(
                    "SELECT topic, key, event FROM tidings_outbox ORDER BY id"
                ).fetchall()
            conn.close()
            return [(topic, key, bytes(event)) for topic, key, event in rows]

        return read


@pytest.fixture
async def postgres_schema() -> AsyncIterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    if not port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL is not running on 127.0.0.1:5432")
    import asyncpg

    schema = f"test_es_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


class TestPostgresEventStore(EventStoreConformance):
    @pytest.fixture
    def store_factory(self, postgres_schema: str) -> Callable[[], object]:
        from tidings.eventsourcing.postgres import PostgresEventStore

        return lambda: PostgresEventStore(POSTGRES_URL, schema=postgres_schema)

    @pytest.fixture
    def published(self, postgres_schema: str) -> Published:
        import asyncpg

        async def read() -> list[tuple[str, str | None, bytes]]:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                rows = await conn.fetch(
                    f"SELECT topic, key, event FROM {postgres_schema}.tidings_outbox ORDER BY id"
                )
            finally:
                await conn.close()
            return [(r["topic"], r["key"], bytes(r["event"])) for r in rows]

        return read


def test_the_url_chooses_the_backend_and_how_events_reach_the_bus(tmp_path: Path) -> None:
    from tidings.errors import ConfigurationError
    from tidings.eventsourcing import event_store_from_url
    from tidings.eventsourcing.postgres import PostgresEventStore

    url = f"sqlite:///{tmp_path}/shop.db"
    same = event_store_from_url(url, broker_url=f"sqlite:///{tmp_path}/./shop.db")
    assert isinstance(same, SqliteEventStore) and same.publish == "broker"
    alone = event_store_from_url(url)
    assert isinstance(alone, SqliteEventStore) and alone.publish == "broker"
    for other in (f"sqlite:///{tmp_path}/other.db", "redis://127.0.0.1:6379/0"):
        elsewhere = event_store_from_url(url, broker_url=other)
        assert isinstance(elsewhere, SqliteEventStore) and elsewhere.publish == "outbox"
    postgres = event_store_from_url(POSTGRES_URL, schema="shop")
    assert isinstance(postgres, PostgresEventStore) and postgres.schema == "shop"
    with pytest.raises(ConfigurationError, match="no event store for 'mysql://u:\\*\\*\\*@h/db'"):
        event_store_from_url("mysql://u:secret@h/db")
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresEventStore(POSTGRES_URL, schema="Robert'); DROP TABLE x;--")


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    from tidings.errors import BrokerClosedError

    store = SqliteEventStore(str(tmp_path / "es.db"))
    with pytest.raises(BrokerClosedError, match="not connected"):
        await store.read("s")
    await store.connect()
    await store.close()
    with pytest.raises(BrokerClosedError, match="closed"):
        await store.append("s", [], 0)
