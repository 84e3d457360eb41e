"""The transactional outbox: how fast a relay empties the outbox table, in one run.

Each relay case fills the outbox table (untimed: ``Outbox.add_many``, 500 rows per
transaction, 64 keys), then times one :class:`~tidings.outbox.Relay` from its start
until every row is marked sent. The baselines publish the same events with a plain
``publish_batch`` loop (500 a call) to the same broker, in the same run. PostgreSQL
is the server on 127.0.0.1:5432 (database ``test``, a schema of its own, dropped at
the end); SQLite and the embedded broker live in a temporary directory; Redis is a
``redis-server`` of its own on a free port.

    python bench/bench_outbox.py [--events N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from tidings import App, Event
from tidings.outbox import Outbox, Relay, install

__all__ = ["main"]

POSTGRES_URL = os.environ.get("TIDINGS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_CHUNK = 500


def _events(app: App, n: int) -> list[Event]:
    return [app.event({"i": i}, type="Tick", key=f"k{i % 64}") for i in range(n)]


@contextlib.asynccontextmanager
async def _postgres() -> AsyncIterator[Any]:
    """A pool on a schema of its own (with the outbox tables), dropped afterwards."""
    schema = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        pool = await asyncpg.create_pool(
            POSTGRES_URL, min_size=1, max_size=4, server_settings={"search_path": schema}
        )
        await install(pool)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def _until_sent(count: Callable[[], Awaitable[int]]) -> None:
    while True:
        if not await count():
            return
        await asyncio.sleep(0.01)


async def _relay_postgres(broker: str, n: int) -> float:
    async with _postgres() as pool:
        app = App("bench-outbox", broker=broker)
        outbox = Outbox()
        events = _events(app, n)
        for start in range(0, n, _CHUNK):
            async with pool.acquire() as connection, connection.transaction():
                batch = events[start : start + _CHUNK]
                await outbox.add_many(connection, [("ticks", e, None) for e in batch])

        async def unsent() -> int:
            query = "SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"
            return int(await pool.fetchval(query))

        started = time.perf_counter()
        async with Relay(pool, app, batch_size=_CHUNK, poll_interval=0.01):
            await _until_sent(unsent)
        elapsed = time.perf_counter() - started
        await app.stop()
        return elapsed


async def _relay_sqlite(broker: str, n: int, directory: Path) -> float:
    path = directory / f"app-{uuid.uuid4().hex[:6]}.db"
    app = App("bench-outbox", broker=broker)
    outbox = Outbox()
    events = _events(app, n)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    await install(db)
    db.commit()
    for start in range(0, n, _CHUNK):
        with db:
            batch = events[start : start + _CHUNK]
            await outbox.add_many(db, [("ticks", e, None) for e in batch])

    async def unsent() -> int:
        row = db.execute("SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL").fetchone()
        return int(row[0])

    started = time.perf_counter()
    async with Relay(f"sqlite:///{path}", app, batch_size=_CHUNK, poll_interval=0.01):
        await _until_sent(unsent)
    elapsed = time.perf_counter() - started
    db.close()
    await app.stop()
    return elapsed


async def _publish_loop(broker: str, n: int) -> float:
    app = App("bench-outbox", broker=broker)
    events = _events(app, n)
    async with app:
        started = time.perf_counter()
        for start in range(0, n, _CHUNK):
            await app.publish_batch(events[start : start + _CHUNK], topic="ticks")
        return time.perf_counter() - started


async def _add_postgres(n: int) -> float:
    async with _postgres() as pool:
        app = App("bench-outbox", broker="memory://")
        outbox = Outbox()
        events = _events(app, n)
        started = time.perf_counter()
        for start in range(0, n, _CHUNK):
            async with pool.acquire() as connection, connection.transaction():
                batch = events[start : start + _CHUNK]
                await outbox.add_many(connection, [("ticks", e, None) for e in batch])
        return time.perf_counter() - started


async def _run(n: int, only: str | None, directory: Path, redis: str | None) -> dict[str, float]:
    def embedded() -> str:
        return f"sqlite:///{directory / f'broker-{uuid.uuid4().hex[:6]}.db'}"

    cases: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("plain publish_batch loop -> embedded broker", lambda: _publish_loop(embedded(), n)),
        ("relay PostgreSQL -> embedded broker", lambda: _relay_postgres(embedded(), n)),
        ("relay SQLite -> embedded broker", lambda: _relay_sqlite(embedded(), n, directory)),
        ("Outbox.add_many into PostgreSQL (500 a transaction)", lambda: _add_postgres(n)),
    ]
    if redis is not None:
        cases += [
            ("plain publish_batch loop -> Redis", lambda: _publish_loop(redis, n)),
            ("relay PostgreSQL -> Redis", lambda: _relay_postgres(redis, n)),
        ]
    rates: dict[str, float] = {}
    for label, case in cases:
        if only is None or only in label:
            rates[label] = n / await case()
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis cases")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-outbox-") as directory,
        contextlib.ExitStack() as stack,
    ):
        redis = None
        if not args.no_redis:
            from bench_redis import redis_server

            redis = stack.enter_context(redis_server("bench-outbox-redis-"))
        rates = asyncio.run(_run(args.events, args.only, Path(directory), redis))
    table = Table(title=f"Outbox relay, {args.events:,} events per case (events/s)")
    table.add_column("case")
    table.add_column("events/s", justify="right")
    for label, rate in rates.items():
        table.add_row(label, f"{rate:,.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
