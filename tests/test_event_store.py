"""The event-store conformance suite on SQLite (broker and outbox modes) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tidings.brokers.sqlite import SqliteBroker
from tidings.event import Event
from tidings.eventsourcing import SqliteEventStore
from tidings.testing.event_store import EventStoreConformance, Published

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import free_port, port_open, service_missing

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
                    "SELECT topic, key, event FROM tidings_outbox ORDER BY position"
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
                    f"SELECT topic, key, event FROM {postgres_schema}.tidings_outbox"
                    " ORDER BY position"
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


async def test_sqlite_nothing_is_stored_when_the_broker_log_refuses_the_events(
    tmp_path: Path,
) -> None:
    from tidings.errors import PublishError

    path = tmp_path / "shop.db"
    async with SqliteEventStore(str(path)) as store:
        await store.append("s", _one_event(), 0)
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages "
                "BEGIN SELECT RAISE(ABORT, 'log refused'); END"
            )
        conn.close()
        with pytest.raises(PublishError, match="log refused"):
            await store.append("s", _one_event(), 1)
        assert [s.version for s in await store.read("s")] == [1]
        assert await store.last_position() == 1


async def test_sqlite_nothing_is_stored_when_the_outbox_refuses_the_events(
    tmp_path: Path,
) -> None:
    from tidings.errors import PublishError

    path = tmp_path / "es.db"
    async with SqliteEventStore(str(path), publish="outbox") as store:
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TABLE tidings_outbox")
        conn.close()
        with pytest.raises(PublishError, match="tidings_outbox"):
            await store.append("s", _one_event(), 0)
        assert await store.read("s") == []


async def test_postgres_nothing_is_stored_when_the_outbox_refuses_the_events(
    postgres_schema: str,
) -> None:
    import asyncpg

    from tidings.errors import StorageError
    from tidings.eventsourcing.postgres import PostgresEventStore

    async with PostgresEventStore(POSTGRES_URL, schema=postgres_schema) as store:
        await store.append("s", _one_event(), 0)
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(
                f"ALTER TABLE {postgres_schema}.tidings_outbox "
                "ADD CONSTRAINT refuse CHECK (topic <> 'events') NOT VALID"
            )
        finally:
            await conn.close()
        with pytest.raises(StorageError, match="refuse"):
            await store.append("s", _one_event(), 1)
        assert [s.version for s in await store.read("s")] == [1]
        assert await store.last_position() == 1


async def test_postgres_unreachable_raises_a_connection_error() -> None:
    from tidings.errors import ConnectionError as TidingsConnectionError
    from tidings.eventsourcing.postgres import PostgresEventStore

    port = free_port()
    store = PostgresEventStore(f"postgresql://postgres:secret@127.0.0.1:{port}/test")
    with pytest.raises(TidingsConnectionError, match=f"127.0.0.1:{port}") as info:
        await store.connect()
    assert "secret" not in str(info.value)


def _one_event() -> list[Event]:
    return [Event(type="StockAdded", source="/shop", data={"quantity": 1})]


def test_importing_event_sourcing_imports_no_postgres_driver() -> None:
    import subprocess

    code = "import sys, tidings.eventsourcing; print('asyncpg' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"durability": "bogus"}, "durability must be 'full' or 'normal'"),
        ({"partitions": 0}, "partitions must be >= 1"),
        ({"publish": "kafka"}, "publish must be 'broker' or 'outbox'"),
        ({"topic": ""}, "topic must be a non-empty string or a function"),
    ],
)
def test_sqlite_store_options_are_checked(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    from tidings.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        SqliteEventStore(str(tmp_path / "es.db"), **options)  # type: ignore[arg-type]


async def test_a_file_of_another_application_is_refused(tmp_path: Path) -> None:
    from tidings.errors import ConfigurationError

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    with pytest.raises(ConfigurationError, match="another application"):
        await SqliteEventStore(str(path)).connect()
