"""The inbox: exactly-once handling on brokers without transactions, in the user's database.

In-process tests use the in-memory broker (its own transactions are not used:
the App is given the inbox); the crash test runs real consumer processes on
Redis and kills them between the handler's effect and the ack.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from _outbox_db import (
    REDIS_URL,
    database_of_kind,
    installed_pool,
    postgres_schema,
    require_redis,
    schema_url,
    start_python,
    stop_process,
    until,
    until_async,
)
from tidings import App, Context, Event, RetryPolicy
from tidings.errors import ConfigurationError
from tidings.outbox import Inbox, install

WORKER = str(Path(__file__).parent / "_outbox_worker.py")


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with postgres_schema() as name:
        yield name


@pytest.fixture
async def pool(schema: str) -> AsyncIterator[Any]:
    async with installed_pool(schema, "CREATE TABLE effects (seq integer NOT NULL)") as pool:
        yield pool


async def effects(pool: Any) -> dict[int, int]:
    rows = await pool.fetch("SELECT seq, count(*) AS n FROM effects GROUP BY seq")
    return {row["seq"]: row["n"] for row in rows}


async def test_effects_and_follow_ups_commit_once_through_failures_and_duplicates(
    pool: Any, memory_url: Any
) -> None:
    app = App("billing", broker=memory_url(), exactly_once=Inbox(pool))
    failed: set[int] = set()
    runs: list[int] = []

    @app.subscribe("orders", delivery="exactly_once", retry=RetryPolicy(initial_delay=0.01))
    async def bill(event: Event, ctx: Context) -> None:
        seq = event.data["seq"]
        runs.append(seq)
        await ctx.transaction.execute("INSERT INTO effects (seq) VALUES ($1)", seq)
        if seq % 3 == 0 and seq not in failed:  # after the effect: it must be rolled back
            failed.add(seq)
            raise RuntimeError("fails once")
        ctx.emit({"seq": seq}, type="Billed", topic="billed")

    async with app:
        sent = [app.event({"seq": i}, type="Order", key=f"k{i % 3}") for i in range(12)]
        await app.publish_batch(sent, topic="orders")
        await app.publish_batch(sent[:4], topic="orders")  # the same events again

        async def all_handled() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM tidings_inbox") == 12)

        assert await until_async(all_handled, 20)
        assert await until(lambda: app.stats()["billing.bill"].skipped == 4, 10)
    assert await effects(pool) == dict.fromkeys(range(12), 1)
    assert sorted(runs) == sorted([*range(12), 0, 3, 6, 9])  # duplicates never ran
    rows = await pool.fetch("SELECT topic, event FROM tidings_outbox ORDER BY position")
    assert [r["topic"] for r in rows] == ["billed"] * 12
    assert sorted(app.codec.decode(bytes(r["event"])).data["seq"] for r in rows) == list(range(12))


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("asyncpg-pool", "PoolConnectionProxy"),
        ("psycopg-pool", "AsyncConnection"),
        ("sqlalchemy-sessions", "AsyncSession"),
        ("sqlalchemy-asyncpg", "AsyncConnection"),
    ],
)
async def test_the_handler_gets_the_drivers_transaction(
    kind: str, given: str, schema: str, pool: Any, memory_url: Any
) -> None:
    seen: list[str] = []
    async with database_of_kind(kind, schema) as database:
        app = App("billing", broker=memory_url(), exactly_once=Inbox(database))
        await handle_three(app, kind, pool, seen)
    assert set(seen) == {given}
    assert await effects(pool) == {0: 1, 1: 1, 2: 1}


async def handle_three(app: App, kind: str, pool: Any, seen: list[str]) -> None:
    """Three events whose handler inserts through ``ctx.transaction`` with its driver's API."""

    @app.subscribe("orders", delivery="exactly_once")
    async def bill(event: Event, ctx: Context) -> None:
        seen.append(type(ctx.transaction).__name__)
        seq = event.data["seq"]
        if kind.startswith("sqlalchemy"):
            insert = text("INSERT INTO effects (seq) VALUES (:seq)")
            await ctx.transaction.execute(insert, {"seq": seq})
        elif kind == "psycopg-pool":
            await ctx.transaction.execute("INSERT INTO effects (seq) VALUES (%s)", (seq,))
        else:
            await ctx.transaction.execute("INSERT INTO effects (seq) VALUES ($1)", seq)

    async with app:
        orders = [app.event({"seq": i}, type="Order") for i in range(3)]
        await app.publish_batch(orders, topic="orders")

        async def handled() -> bool:
            return len(await effects(pool)) == 3

        assert await until_async(handled, 10)


async def test_sqlite_inbox(tmp_path: Path, memory_url: Any) -> None:
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    await install(connection)
    connection.execute("CREATE TABLE effects (seq INTEGER NOT NULL)")
    connection.commit()
    inbox = Inbox(f"sqlite:///{path}")
    app = App("billing", broker=memory_url(), exactly_once=inbox)

    @app.subscribe("orders", delivery="exactly_once")
    async def bill(event: Event, ctx: Context) -> None:
        ctx.transaction.execute("INSERT INTO effects (seq) VALUES (?)", (event.data["seq"],))
        ctx.emit({"seq": event.data["seq"]}, type="Billed", topic="billed")

    async with app:
        sent = [app.event({"seq": i}, type="Order") for i in range(5)]
        await app.publish_batch([*sent, *sent], topic="orders")
        assert await until(lambda: app.stats()["billing.bill"].skipped == 5, 10)
    await inbox.close()
    assert connection.execute("SELECT count(*), count(DISTINCT seq) FROM effects").fetchone() == (
        5,
        5,
    )
    assert connection.execute("SELECT count(*) FROM tidings_outbox").fetchone() == (5,)
    connection.close()


async def test_a_dead_letter_under_an_inbox_goes_to_the_broker(pool: Any, memory_url: Any) -> None:
    url = memory_url()
    app = App("billing", broker=url, exactly_once=Inbox(pool))
    dead: list[Event] = []

    @app.subscribe("orders", delivery="exactly_once", retry=RetryPolicy(max_attempts=1))
    async def bill(event: Event, ctx: Context) -> None:
        await ctx.transaction.execute("INSERT INTO effects (seq) VALUES (1)")
        raise RuntimeError("always")

    @app.subscribe("orders.dlq")
    async def dead_letters(event: Event) -> None:
        dead.append(event)

    async with app:
        await app.publish(app.event({"seq": 1}, type="Order"), topic="orders")
        assert await until(lambda: len(dead) == 1, 10)
    assert await effects(pool) == {}
    assert await pool.fetchval("SELECT count(*) FROM tidings_inbox") == 0


def test_exactly_once_without_transactions_needs_an_inbox() -> None:
    app = App("billing", broker=REDIS_URL)
    with pytest.raises(ConfigurationError, match="inbox"):

        @app.subscribe("orders", delivery="exactly_once")
        async def bill(event: Event) -> None: ...

    with_inbox = App("billing", broker=REDIS_URL, exactly_once=Inbox("sqlite:///unused.db"))

    @with_inbox.subscribe("orders", delivery="exactly_once")
    async def bill_once(event: Event) -> None: ...

    with pytest.raises(ConfigurationError, match="cannot open transactions"):
        Inbox(object())


async def test_consumer_killed_between_effect_and_ack_leaves_each_effect_once(
    schema: str, pool: Any
) -> None:
    require_redis()
    topic = f"inbox-faults-{uuid.uuid4().hex[:8]}"
    fast = f"{REDIS_URL}?heartbeat=0.25&session_timeout=1.5"
    env = {"OUTBOX_DB": schema_url(schema), "OUTBOX_BROKER": fast, "OUTBOX_TOPIC": topic}
    count = 60
    producer = App("orders", broker=REDIS_URL)
    async with producer:
        events = [producer.event({"seq": i}, type="Order", key=f"k{i % 4}") for i in range(count)]
        await producer.publish_batch(events, topic=topic)

    async def handled(at_least: int) -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM tidings_inbox") >= at_least)

    # 1: killed after event 20's commit, before its ack (redelivered: must be skipped).
    consumer = start_python(WORKER, "consumer", env={**env, "KILL_AFTER_COMMIT": "20"})
    assert await until(lambda: consumer.poll() is not None, 60), "did not kill itself"
    assert (await effects(pool)).get(20) == 1
    # 2: killed after event 40's effect, before its commit (rolled back: must run again).
    consumer = start_python(WORKER, "consumer", env={**env, "KILL_IN_HANDLER": "40"})
    assert await until(lambda: consumer.poll() is not None, 60), "did not kill itself"
    assert 40 not in await effects(pool)
    # 3: killed at no chosen point, then finishing.
    consumer = start_python(WORKER, "consumer", env=env)
    try:
        assert await until_async(lambda: handled(count), 60)
        await asyncio.sleep(1.0)  # a late duplicate would show now
    finally:
        stop_process(consumer)
    assert await effects(pool) == dict.fromkeys(range(count), 1)
    follow_ups = await pool.fetch("SELECT event FROM tidings_outbox")
    seqs = sorted(producer.codec.decode(bytes(r["event"])).data["seq"] for r in follow_ups)
    assert seqs == list(range(count))


async def test_an_inbox_that_cannot_begin_fails_the_attempt(
    tmp_path: Path, memory_url: Any
) -> None:
    """The database is unreachable: each attempt fails, then the event is dead-lettered."""
    inbox = Inbox(f"sqlite:///{tmp_path / 'missing' / 'app.db'}")
    app = App("billing", broker=memory_url(), exactly_once=inbox)
    ran: list[int] = []
    dead: list[Event] = []
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01)

    @app.subscribe("orders", delivery="exactly_once", retry=policy)
    async def bill(event: Event, ctx: Context) -> None:
        ran.append(ctx.attempt)

    @app.subscribe("orders.dlq")
    async def dead_letters(event: Event) -> None:
        dead.append(event)

    async with app:
        await app.publish(app.event({"seq": 1}, type="Order"), topic="orders")
        assert await until(lambda: len(dead) == 1, 10)
    assert ran == []
    assert app.stats()["billing.bill"].failed == 2
