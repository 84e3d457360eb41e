"""Projections fed from the event store: checkpoint and read model in one transaction."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.eventsourcing import EventStore, SqliteEventStore
from tidings.projections import Projection, Projector

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import run_python

from _outbox_db import postgres_schema, schema_url

READ_MODEL = (
    "CREATE TABLE IF NOT EXISTS totals (order_id TEXT PRIMARY KEY, total DOUBLE PRECISION)",
    # One row per applied event: a second application would break the primary key.
    "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY)",
)


def totals_projection(fail_on: str | None = None) -> Projection:
    totals = Projection("order-totals")

    @totals.on("OrderPlaced")
    async def placed(event: Event, sql: Any) -> None:
        if event.subject == fail_on:
            raise RuntimeError(f"cannot project {event.subject}")
        await sql.execute(
            "INSERT INTO totals (order_id, total) VALUES ({}, {})",
            (event.subject, event.data["total"]),
        )
        await sql.execute("INSERT INTO applied (event_id) VALUES ({})", (event.id,))

    @totals.on("OrderCancelled")
    async def cancelled(event: Event, sql: Any) -> None:
        await sql.execute("DELETE FROM totals WHERE order_id = {}", (event.subject,))
        await sql.execute("INSERT INTO applied (event_id) VALUES ({})", (event.id,))

    @totals.resets
    async def clear(sql: Any) -> None:
        await sql.execute("DELETE FROM totals")
        await sql.execute("DELETE FROM applied")

    return totals


async def _place(store: EventStore, order: str, total: float, cancel: bool = False) -> None:
    events = [Event(type="OrderPlaced", source="/shop", data={"total": total})]
    if cancel:
        events.append(Event(type="OrderCancelled", source="/shop", data={}))
    events.append(Event(type="OrderNoted", source="/shop", data={}))  # no handler takes it
    await store.append(order, events, expected_version=0)


async def _rows(projector: Projector, table: str = "totals") -> list[tuple[Any, ...]]:
    async with projector.database.transaction() as sql:
        return sorted(await sql.fetch(f"SELECT * FROM {table}"))


async def _prepare(projector: Projector) -> None:
    async with projector.database.transaction() as sql:
        for statement in READ_MODEL:
            await sql.execute(statement)


class ProjectionContract:
    """What a projector does on one backend; subclasses open the store and database."""

    def projector(self, projection: Projection, batch: int = 500) -> Projector:
        raise NotImplementedError

    async def test_catch_up_applies_each_event_once_and_keeps_its_checkpoint(self) -> None:
        async with self.projector(totals_projection(), batch=2) as projector:
            await _prepare(projector)
            await _place(projector.store, "o1", 10.0)
            await _place(projector.store, "o2", 20.0, cancel=True)
            assert await projector.catch_up() == 5
            assert await _rows(projector) == [("o1", 10.0)]
            await _place(projector.store, "o3", 30.0)
            assert await projector.catch_up() == 2  # only what came since
            assert await _rows(projector) == [("o1", 10.0), ("o3", 30.0)]
            assert len(await _rows(projector, "applied")) == 4
            [status] = await projector.status()
            assert (status.name, status.position, status.lag) == ("order-totals", 7, 0)

    async def test_a_failing_batch_leaves_neither_changes_nor_checkpoint(self) -> None:
        async with self.projector(totals_projection(fail_on="o2")) as projector:
            await _prepare(projector)
            await _place(projector.store, "o1", 10.0)
            await _place(projector.store, "o2", 20.0)
            with pytest.raises(RuntimeError, match="cannot project o2"):
                await projector.catch_up()
            assert await _rows(projector) == []
            [status] = await projector.status()
            assert (status.position, status.lag) == (0, 4)
        async with self.projector(totals_projection()) as fixed:
            assert await fixed.catch_up() == 4
            assert await _rows(fixed) == [("o1", 10.0), ("o2", 20.0)]

    async def test_rebuild_replays_from_the_first_event(self) -> None:
        async with self.projector(totals_projection()) as projector:
            await _prepare(projector)
            await _place(projector.store, "o1", 10.0)
            await projector.catch_up()
            async with projector.database.transaction() as sql:  # the read model drifted
                await sql.execute("UPDATE totals SET total = 0")
            seen: list[tuple[int, int]] = []
            assert await projector.rebuild("order-totals", lambda n, left: seen.append((n, left)))
            assert await _rows(projector) == [("o1", 10.0)]
            assert seen[-1] == (2, 0)

    async def test_two_projectors_of_one_projection_apply_each_event_once(self) -> None:
        first = self.projector(totals_projection(), batch=3)
        second = self.projector(totals_projection(), batch=3)
        async with first, second:
            await _prepare(first)
            for i in range(20):
                await _place(first.store, f"o{i}", float(i))
            await asyncio.gather(first.catch_up(), second.catch_up())
            assert len(await _rows(first)) == 20
            assert len(await _rows(first, "applied")) == 20  # a double apply would have failed


class TestSqliteProjections(ProjectionContract):
    @pytest.fixture(autouse=True)
    def _paths(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def projector(self, projection: Projection, batch: int = 500) -> Projector:
        store = SqliteEventStore(str(self.tmp_path / "events.db"))
        return Projector(store, f"sqlite:///{self.tmp_path / 'read.db'}", [projection], batch=batch)


class TestPostgresProjections(ProjectionContract):
    @pytest.fixture(autouse=True)
    async def _schema(self) -> AsyncIterator[None]:
        async with postgres_schema() as schema:
            self.schema = schema
            yield

    def projector(self, projection: Projection, batch: int = 500) -> Projector:
        from tidings.eventsourcing.postgres import PostgresEventStore

        store = PostgresEventStore(schema_url(self.schema), schema=self.schema)
        return Projector(store, schema_url(self.schema), [projection], batch=batch)


def test_a_rebuild_needs_a_reset_and_names_must_differ(tmp_path: Path) -> None:
    store = SqliteEventStore(str(tmp_path / "e.db"))
    bare = Projection("bare")
    projector = Projector(store, f"sqlite:///{tmp_path / 'r.db'}", [bare])
    with pytest.raises(ConfigurationError, match="no @resets"):
        asyncio.run(projector.rebuild("bare"))
    asyncio.run(projector.close())
    with pytest.raises(ConfigurationError, match="must differ"):
        Projector(store, f"sqlite:///{tmp_path / 'r.db'}", [bare, Projection("bare")])


def test_the_cli_shows_status_and_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # reports.py imports this module
    (tmp_path / "reports.py").write_text(
        textwrap.dedent(
            f"""
            from tidings.eventsourcing import SqliteEventStore
            from tidings.projections import Projector
            from test_event_store_projections import totals_projection

            projector = Projector(
                SqliteEventStore({str(tmp_path / "events.db")!r}),
                "sqlite:///{tmp_path / "read.db"}",
                [totals_projection()],
            )
            """
        )
    )

    async def fill() -> None:
        store = SqliteEventStore(str(tmp_path / "events.db"))
        async with store:
            for i in range(30):
                await _place(store, f"o{i}", float(i))

    asyncio.run(fill())
    with sqlite3.connect(tmp_path / "read.db") as conn:
        for statement in READ_MODEL:
            conn.execute(statement)
    conn.close()
    status = run_python(
        "-m", "tidings.cli", "projection", "status", "reports:projector", cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    assert "order-totals" in status.stdout and "60" in status.stdout  # lag: 60 events
    rebuilt = run_python(
        "-m",
        "tidings.cli",
        "projection",
        "rebuild",
        "reports:projector",
        "order-totals",
        cwd=tmp_path,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "order-totals: 60 event(s) replayed" in rebuilt.stdout
    with sqlite3.connect(tmp_path / "read.db") as conn:
        assert conn.execute("SELECT count(*) FROM totals").fetchone() == (30,)
    conn.close()
    again = run_python(
        "-m", "tidings.cli", "projection", "status", "reports:projector", "--json", cwd=tmp_path
    )
    assert json.loads(again.stdout)["lag"] == 0


async def test_a_relay_publishes_what_the_store_wrote_to_its_outbox(tmp_path: Path) -> None:
    """The event store's outbox rows are tidings.outbox's: a Relay publishes them, per key."""
    from tidings import App
    from tidings.outbox import Relay

    store = SqliteEventStore(str(tmp_path / "events.db"), publish="outbox")
    async with store:
        for i in range(3):
            await _place(store, f"o{i}", float(i))
    consumer = App("reports", broker="memory://relay-test")
    got: list[tuple[str | None, str]] = []

    @consumer.subscribe("events", group="reports")
    async def seen(event: Event) -> None:
        got.append((event.subject, event.type))

    async with consumer, Relay(f"sqlite:///{tmp_path / 'events.db'}", consumer, poll_interval=0.05):
        for _ in range(200):
            if len(got) == 6:
                break
            await asyncio.sleep(0.02)
    assert sorted(got) == sorted(
        (f"o{i}", kind) for i in range(3) for kind in ("OrderPlaced", "OrderNoted")
    )
    with sqlite3.connect(tmp_path / "events.db") as conn:
        assert conn.execute(
            "SELECT count(*) FROM tidings_outbox WHERE sent_at IS NULL"
        ).fetchone() == (0,)
    conn.close()
