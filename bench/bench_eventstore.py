"""Event store: tidings against the eventsourcing library, on SQLite and PostgreSQL, one run.

Rows: append throughput with one event per append (one writer, then 8
concurrent writers: tasks for tidings, threads for eventsourcing) and with
100 per append (published, and not published); the time to load an
aggregate of 10,000 events without and with a snapshot. Each row does the
same work through ``tidings.eventsourcing`` and through ``eventsourcing``
(its ``sqlite`` and ``postgres`` persistence modules).

Durability is made equal: SQLite files in WAL mode with ``synchronous=FULL``
on both sides (tidings' ``durability=full``; eventsourcing switches to WAL
and leaves SQLite's default, FULL, which the run checks), so every append is
fsynced before it returns. PostgreSQL: one server (127.0.0.1:5432, database
``test``), a fresh schema per side, ``synchronous_commit`` as the server has
it for both. tidings also publishes each appended event (to the embedded
broker's log on SQLite, to the outbox table on PostgreSQL); eventsourcing
does not: that work is extra on the tidings side, except in the "not
published" row (a store with ``topic=None``).

The run also prints the SQLite floor: raw ``sqlite3`` commits of one row
each, with the same settings, per second. No store can append one event
per durable commit faster than that from one writer.

    python bench/bench_eventstore.py [--events N] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from _eventstore_cases import (
    SnapshottingApplication,
    es_aggregate,
    es_append,
    es_append_concurrently,
    tidings_aggregate,
    tidings_append,
    tidings_append_concurrently,
)
from eventsourcing.application import Application
from rich.console import Console
from rich.table import Table

from tidings.eventsourcing import EventStore, SqliteEventStore
from tidings.eventsourcing.postgres import PostgresEventStore

__all__ = ["TARGET", "main"]

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: tidings must reach this multiple of eventsourcing on every row.
TARGET = 1.5
LOAD_EVENTS = 10_000
BATCH = 100
#: Concurrent appenders of the concurrent row (tasks for tidings, threads for eventsourcing).
WRITERS = 8

#: (row, unit): "events/s" rows compare rates (higher is better), "ms" rows times.
Row = tuple[str, str, float, float]


def _sqlite_app(path: Path) -> Application[uuid.UUID]:
    return SnapshottingApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )


def _postgres_app(schema: str) -> Application[uuid.UUID]:
    return SnapshottingApplication(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": "test",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": "5432",
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "",
            "POSTGRES_SCHEMA": schema,
        }
    )


def _es_synchronous(app: Application[uuid.UUID]) -> str:
    """The journal mode and synchronous setting of eventsourcing's SQLite connection."""
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        cursor.execute("PRAGMA synchronous")
        level = cursor.fetchone()[0]
    return f"{mode}, synchronous={level}"


async def _rows(
    store: EventStore,
    unpublished: EventStore,
    app: Application[uuid.UUID],
    events: int,
    rounds: int,
) -> list[Row]:
    """Every case, tidings and eventsourcing taking turns ``rounds`` times; the best of each.

    The machine is shared: taking turns and keeping the best run of each side
    compares the two at their least disturbed. ``unpublished`` is a store with
    ``topic=None``, for the row doing exactly eventsourcing's work (no publishing).
    """
    rows: list[Row] = []
    appends: list[tuple[str, Callable[[], Awaitable[float]], Callable[[], float], int]] = [
        (
            "append, 1 event per call",
            lambda: tidings_append(store, events, 1),
            lambda: es_append(app, events, 1),
            events,
        ),
        (
            f"append, 1 event per call, {WRITERS} writers",
            lambda: tidings_append_concurrently(store, events, WRITERS),
            lambda: es_append_concurrently(app, events, WRITERS),
            events,
        ),
        (
            f"append, {BATCH} events per call",
            lambda: tidings_append(store, events * 10, BATCH),
            lambda: es_append(app, events * 10, BATCH),
            events * 10,
        ),
        (
            f"append, {BATCH} events per call, not published",
            lambda: tidings_append(unpublished, events * 10, BATCH),
            lambda: es_append(app, events * 10, BATCH),
            events * 10,
        ),
    ]
    for label, ours, theirs, count in appends:
        best_ours, best_theirs = await _best(rounds, ours, theirs)
        rows.append((label, "events/s", count / best_ours, count / best_theirs))
    for snapshot in (False, True):
        load_ours = await tidings_aggregate(store, LOAD_EVENTS, snapshot)
        load_theirs = es_aggregate(app, LOAD_EVENTS, snapshot)
        best_ours, best_theirs = await _best(rounds * 2, load_ours, load_theirs)
        label = f"load {LOAD_EVENTS:,} events, {'from a snapshot' if snapshot else 'no snapshot'}"
        rows.append((label, "ms", best_ours * 1000, best_theirs * 1000))
    return rows


async def _best(
    rounds: int, ours: Callable[[], Awaitable[float]], theirs: Callable[[], float]
) -> tuple[float, float]:
    """The fewest seconds of each side over ``rounds`` turns."""
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, await ours())
        best_theirs = min(best_theirs, theirs())
    return best_ours, best_theirs


def _sqlite_floor(path: str, commits: int) -> float:
    """Commits per second of one small row each, WAL and synchronous=FULL, raw sqlite3."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (stream TEXT, version INTEGER, event BLOB)")
    row = ("sku-" + "0" * 32, 0, b"x" * 200)
    start = time.perf_counter()
    for _ in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", row)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return commits / seconds


async def _sqlite(events: int, rounds: int) -> tuple[list[Row], str]:
    with tempfile.TemporaryDirectory(prefix="bench-es-") as directory:
        app = _sqlite_app(Path(directory) / "eventsourcing.db")
        settings = _es_synchronous(app)
        floor = max(_sqlite_floor(os.path.join(directory, f"raw{i}.db"), events) for i in range(3))
        settings += f"; raw sqlite3 floor, one row per commit: {floor:,.0f} commits/s"
        async with (
            SqliteEventStore(os.path.join(directory, "tidings.db")) as store,
            SqliteEventStore(os.path.join(directory, "bare.db"), topic=None) as unpublished,
        ):
            rows = await _rows(store, unpublished, app, events, rounds)
        app.close()
    return rows, settings


async def _postgres(events: int, rounds: int) -> list[Row]:
    run = uuid.uuid4().hex[:8]
    ours, bare, theirs = f"bench_tidings_{run}", f"bench_bare_{run}", f"bench_es_{run}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE SCHEMA {theirs}")
    try:
        app = _postgres_app(theirs)
        async with (
            PostgresEventStore(POSTGRES_URL, schema=ours) as store,
            PostgresEventStore(POSTGRES_URL, schema=bare, topic=None) as unpublished,
        ):
            rows = await _rows(store, unpublished, app, events, rounds)
        app.close()
    finally:
        for schema in (ours, bare, theirs):
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return rows


def _ratio(unit: str, ours: float, theirs: float) -> float:
    return ours / theirs if unit == "events/s" else theirs / ours


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="single appends per side")
    parser.add_argument("--rounds", type=int, default=3, help="turns per case (best is kept)")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one backend")
    args = parser.parse_args(argv)
    results: list[tuple[str, Row]] = []
    note = ""
    if args.only in (None, "sqlite"):
        rows, settings = asyncio.run(_sqlite(args.events, args.rounds))
        results += [("SQLite", row) for row in rows]
        note = f"eventsourcing's SQLite connection: {settings}; tidings: wal, synchronous=2 (FULL)"
    if args.only in (None, "postgres"):
        results += [("PostgreSQL", row) for row in asyncio.run(_postgres(args.events, args.rounds))]
    table = Table(title=f"event store: tidings vs eventsourcing (target >= {TARGET}x every row)")
    for column in ("backend", "case", "unit", "tidings", "eventsourcing", "ratio", ""):
        table.add_column(column, justify="right" if column in ("tidings", "ratio") else "left")
    failed = False
    for backend, (label, unit, ours, theirs) in results:
        ratio = _ratio(unit, ours, theirs)
        failed |= ratio < TARGET
        digits = 0 if unit == "events/s" else 1
        table.add_row(
            backend,
            label,
            unit,
            f"{ours:,.{digits}f}",
            f"{theirs:,.{digits}f}",
            f"{ratio:.2f}x",
            "ok" if ratio >= TARGET else "MISS",
        )
    console = Console(width=140)
    console.print(table)
    if note:
        console.print(note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
