"""The transactional outbox: rows written in the caller's transaction, published by relays.

Against a real PostgreSQL (a schema per test) and SQLite files; the events go
to the in-memory broker, where a consumer counts what arrived.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from _outbox_db import database_of_kind, installed_pool, postgres_schema, schema_url, until
from tidings import App, Event
from tidings.errors import ConfigurationError, DecodeError, InvalidEventError
from tidings.outbox import Outbox, Relay, install, statements


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with postgres_schema() as name:
        yield name


@pytest.fixture
async def pool(schema: str) -> AsyncIterator[Any]:
    async with installed_pool(schema) as pool:
        yield pool


class Received:
    """A consumer on ``topic`` of a memory broker: what arrived, per key, in order."""

    def __init__(self, url: str, topic: str) -> None:
        self.app = App("receiver", broker=url)
        self.ids: Counter[str] = Counter()
        self.by_key: dict[str | None, list[int]] = defaultdict(list)

        @self.app.subscribe(topic, group="receiver")
        async def receive(event: Event) -> None:
            self.ids[event.id] += 1
            self.by_key[event.key].append(event.data["seq"])

    @property
    def total(self) -> int:
        return sum(self.ids.values())

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        assert await until(lambda: self.total >= count, timeout), (self.total, count)


def events(app: App, start: int, count: int, keys: int = 4) -> list[Event]:
    return [
        app.event({"seq": i}, type="Item", key=f"k{i % keys}") for i in range(start, start + count)
    ]


async def balanced(first: Relay, second: Relay, timeout: float = 10) -> None:
    """Wait until the two relays hold 8 of the 16 partitions each."""

    def halves() -> bool:
        return len(first.leases.partitions) == len(second.leases.partitions) == 8

    assert await until(halves, timeout), (first.leases.partitions, second.leases.partitions)


async def unsent(pool: Any) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"))


async def test_rows_from_every_driver_are_relayed_in_order_and_marked_sent(
    pool: Any, schema: str, memory_url: Any
) -> None:
    url = memory_url()
    writer = App("writer", broker=url)
    outbox = Outbox()
    batches = [events(writer, i * 10, 10) for i in range(4)]
    # asyncpg
    async with pool.acquire() as connection, connection.transaction():
        for event in batches[0]:
            await outbox.add(connection, "items", event)
    # psycopg 3
    connection = await psycopg.AsyncConnection.connect(schema_url(schema))
    async with connection, connection.transaction():
        await outbox.add_many(connection, [("items", e, None) for e in batches[1]])
    # SQLAlchemy 2: a session and a bare connection (through psycopg)
    engine = create_async_engine(
        schema_url(schema).replace("postgresql://", "postgresql+psycopg://")
    )
    try:
        async with AsyncSession(engine) as session, session.begin():
            await outbox.add_many(session, [("items", e, None) for e in batches[2]])
        async with engine.begin() as sa_connection:
            for event in batches[3]:
                await outbox.add(sa_connection, "items", event)
    finally:
        await engine.dispose()
    assert await unsent(pool) == 40

    received = Received(url, "items")
    async with received.app, Relay(pool, writer, poll_interval=0.05):
        await received.wait_for(40)
    assert received.total == 40 and set(received.ids.values()) == {1}
    for key, seqs in received.by_key.items():
        assert seqs == sorted(seqs), key
    assert await unsent(pool) == 0


async def test_a_rolled_back_transaction_leaves_nothing_to_publish(pool: Any) -> None:
    app = App("writer", broker="memory://")
    with pytest.raises(RuntimeError):
        async with pool.acquire() as connection, connection.transaction():
            await Outbox().add(connection, "items", app.event({"seq": 1}, type="Item"))
            raise RuntimeError("the application's own write failed")
    assert await pool.fetchval("SELECT count(*) FROM tidings_outbox") == 0


async def test_the_key_argument_orders_and_keys_the_event(pool: Any, memory_url: Any) -> None:
    url = memory_url()
    app = App("writer", broker=url)
    async with pool.acquire() as connection, connection.transaction():
        await Outbox().add(connection, "items", app.event({"seq": 0}, type="Item"), key="order-7")
    assert await pool.fetchval("SELECT key FROM tidings_outbox") == "order-7"
    received = Received(url, "items")
    async with received.app, Relay(pool, app, poll_interval=0.05):
        await received.wait_for(1)
    assert dict(received.by_key) == {"order-7": [0]}


async def test_two_relays_share_the_partitions_and_publish_each_row_once(
    pool: Any, memory_url: Any
) -> None:
    url = memory_url()
    app = App("writer", broker=url)
    received = Received(url, "items")
    outbox = Outbox()
    first = Relay(pool, app, poll_interval=0.02, lease_ttl=1.0, batch_size=50, name="first")
    second = Relay(pool, app, poll_interval=0.02, lease_ttl=1.0, batch_size=50, name="second")
    async with received.app, first, second:
        await balanced(first, second)
        for start in range(0, 2000, 100):  # written while both relays run
            async with pool.acquire() as connection, connection.transaction():
                await outbox.add_many(
                    connection, [("items", e, None) for e in events(app, start, 100, keys=64)]
                )
            await asyncio.sleep(0.02)
        await received.wait_for(2000, timeout=60)
        await asyncio.sleep(0.5)  # anything published twice would arrive by now
    assert received.total == 2000 and set(received.ids.values()) == {1}
    assert first.relayed > 0 and second.relayed > 0
    assert first.relayed + second.relayed == 2000
    for key, seqs in received.by_key.items():
        assert seqs == sorted(seqs), key
    assert await unsent(pool) == 0


async def test_a_relay_gives_partitions_to_a_relay_that_joins(pool: Any) -> None:
    broker = "memory://"
    first = Relay(pool, broker, lease_ttl=0.5, name="first")
    async with first:
        await asyncio.sleep(0.3)
        assert len(first.leases.partitions) == 16
        async with Relay(pool, broker, lease_ttl=0.5, name="second") as second:
            await balanced(first, second)
            assert sorted(first.leases.partitions + second.leases.partitions) == list(range(16))


async def test_sqlite_outbox_and_relay(tmp_path: Path, memory_url: Any) -> None:
    path = tmp_path / "app.db"
    url = memory_url()
    app = App("writer", broker=url)
    connection = sqlite3.connect(path)
    await install(connection)
    connection.commit()
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with connection:  # the application's transaction
        for event in events(app, 0, 30):
            connection.execute("INSERT INTO orders (id) VALUES (?)", (event.data["seq"],))
            await Outbox().add(connection, "items", event)
    received = Received(url, "items")
    async with received.app, Relay(f"sqlite:///{path}", app, poll_interval=0.05):
        await received.wait_for(30)
    assert received.total == 30
    assert all(seqs == sorted(seqs) for seqs in received.by_key.values())
    assert connection.execute(
        "SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"
    ).fetchone() == (0,)
    connection.close()


async def test_a_second_sqlite_relay_waits_for_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    await install(url)
    first = Relay(url, "memory://", lease_ttl=0.6, name="first")
    second = Relay(url, "memory://", lease_ttl=0.6, name="second")
    await first.relay_once()
    await second.relay_once()
    assert first.leases.partitions == [0] and second.leases.partitions == []
    # first stops renewing (as if killed): its lease expires and second takes over.
    await asyncio.sleep(0.7)
    await second.relay_once()
    assert second.leases.partitions == [0]
    await first.database.close()
    await second.database.close()


def test_statements_define_the_shared_columns() -> None:
    create = statements("postgresql")[0]
    for column in ("position bigserial", "topic text", "key text", "event bytea",
                   "created_at timestamptz", "sent_at timestamptz"):  # fmt: skip
        assert column in create
    assert "position INTEGER PRIMARY KEY" in statements("sqlite")[0]


async def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="table name"):
        Outbox("orders; DROP TABLE x")
    connection = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(InvalidEventError, match=r"app\.event"):
        await Outbox().add(connection, "items", {"seq": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="topic"):
        await Outbox().add(connection, "", Event(type="T", source="/s"))
    with pytest.raises(ConfigurationError, match="cannot write to the outbox"):
        await Outbox().add(object(), "items", Event(type="T", source="/s"))
    with pytest.raises(ConfigurationError, match="postgresql:// or sqlite:///"):
        Relay("mysql://localhost/db", "memory://")
    with pytest.raises(ConfigurationError, match="batch_size"):
        Relay("sqlite:///x.db", "memory://", batch_size=0)
    connection.close()


async def test_rows_written_by_hand_in_the_shared_shape_are_relayed(
    pool: Any, memory_url: Any
) -> None:
    """Another writer (an event store) inserts rows of the documented shape itself."""
    url = memory_url()
    app = App("writer", broker=url)
    event = app.event({"seq": 5}, type="Item", key="k")
    await pool.execute(
        "INSERT INTO tidings_outbox (topic, key, event) VALUES ($1, $2, $3)",
        "items",
        "k",
        app.codec.encode_structured(event),
    )
    received = Received(url, "items")
    async with received.app, Relay(pool, app, poll_interval=0.05):
        await received.wait_for(1)
    assert list(received.ids) == [event.id]


@pytest.mark.parametrize(
    "kind",
    ["url", "psycopg-pool", "sqlalchemy-asyncpg", "sqlalchemy-psycopg", "sqlalchemy-sessions"],
)
async def test_a_relay_reads_through_each_kind_of_database(
    kind: str, pool: Any, schema: str, memory_url: Any
) -> None:
    broker = memory_url()
    app = App("writer", broker=broker)
    async with pool.acquire() as connection, connection.transaction():
        await Outbox().add_many(connection, [("items", e, None) for e in events(app, 0, 20)])
    received = Received(broker, "items")
    async with database_of_kind(kind, schema) as database:
        relay = Relay(database, app, poll_interval=0.05, lease_ttl=2)
        async with received.app, relay:
            await received.wait_for(20)
            assert len(relay.leases.partitions) == 16
    assert received.total == 20
    assert all(seqs == sorted(seqs) for seqs in received.by_key.values())
    assert await unsent(pool) == 0


async def test_the_first_install_fixes_the_partitions(schema: str) -> None:
    async with installed_pool(schema) as pool:
        await install(pool, partitions=4)  # too late: 16 already
        assert await pool.fetchval("SELECT count(*) FROM tidings_outbox_leases") == 16
    with pytest.raises(ConfigurationError, match="partitions"):
        await install(pool, partitions=0)


def test_importing_the_outbox_imports_no_database_driver() -> None:
    code = (
        "import sys, tidings.outbox; "
        "print(sorted(m for m in ('asyncpg', 'psycopg', 'psycopg_pool', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


async def test_a_row_that_is_no_event_stops_the_relay_until_it_is_removed(
    tmp_path: Path, memory_url: Any
) -> None:
    path = tmp_path / "app.db"
    url = memory_url()
    app = App("writer", broker=url)
    connection = sqlite3.connect(path)
    await install(connection)
    with connection:
        connection.execute(
            "INSERT INTO tidings_outbox (topic, key, event) VALUES ('items', 'k0', x'7b7d')"
        )
        await Outbox().add_many(connection, [("items", e, None) for e in events(app, 0, 3)])
    relay = Relay(f"sqlite:///{path}", app)
    with pytest.raises(DecodeError):
        await relay.relay_once()
    assert relay.relayed == 0
    with connection:
        connection.execute("DELETE FROM tidings_outbox WHERE position = 1")
    assert await relay.relay_once() == 3
    await relay.database.close()
    connection.close()
