"""Feeding projections from the event store: catch up, keep up, rebuild, report.

The checkpoint of each projection is a row of ``tidings_projections`` in the
read model's database (created on first use). One step of a projection, in
one transaction of that database:

1. read its checkpoint (locking the row on PostgreSQL, the file on SQLite, so
   two projectors of one projection take turns instead of both applying);
2. read the next events after it from the store (global order);
3. apply each event its handlers take;
4. store the position of the last event read as the new checkpoint.

A crash anywhere rolls back the batch's changes with the checkpoint: the
batch is applied again, once. Events of types no handler takes still move the
checkpoint. The store's positions must commit in order (both stores' appends
do), or a catch-up could pass an event committed late below its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tidings.errors import ConfigurationError
from tidings.eventsourcing.store import EventStore
from tidings.outbox._database import Database, database_for
from tidings.projections.projection import Projection

__all__ = ["CHECKPOINTS", "ProjectionStatus", "Projector"]

#: The table of checkpoints in the read model's database.
CHECKPOINTS = "tidings_projections"

_CREATE = f"""CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)"""
_ENSURE = (
    f"INSERT INTO {CHECKPOINTS} (name, position, updated_at) VALUES ({{}}, 0, {{}}) "
    "ON CONFLICT (name) DO NOTHING"
)
_SET = f"UPDATE {CHECKPOINTS} SET position = {{}}, updated_at = {{}} WHERE name = {{}}"

#: ``progress(applied so far, events to go)`` after each batch.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ProjectionStatus:
    """Where a projection stands: its checkpoint, the store's head, and the lag between."""

    name: str
    position: int
    head: int
    updated_at: float | None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class Projector:
    """Feeds ``projections`` from ``store`` into the read model's ``database``.

    ``database``: a ``postgresql://`` or ``sqlite:///`` URL, an asyncpg pool, a
    psycopg ``AsyncConnectionPool``, or a SQLAlchemy ``AsyncEngine`` /
    ``async_sessionmaker`` (as the outbox takes). ``batch``: events per
    transaction; ``poll``: seconds between looks at the store when caught up.
    """

    def __init__(
        self,
        store: EventStore,
        database: Any,
        projections: Sequence[Projection],
        *,
        batch: int = 500,
        poll: float = 0.2,
    ) -> None:
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"projection names must differ: {names}")
        if batch < 1 or poll <= 0:
            raise ConfigurationError("batch must be >= 1 and poll > 0")
        self.store = store
        self.database: Database = database_for(database)
        self.projections = {p.name: p for p in projections}
        self.batch = batch
        self.poll = poll
        self._ready = False

    async def __aenter__(self) -> Projector:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect the store and create the checkpoint rows (idempotent)."""
        if self._ready:
            return
        await self.store.connect()
        async with self.database.transaction() as sql:
            await sql.execute(_CREATE)
            for name in self.projections:
                await sql.execute(_ENSURE, (name, time.time()))
        self._ready = True

    async def close(self) -> None:
        await self.store.close()
        await self.database.close()
        self._ready = False

    def _projection(self, name: str) -> Projection:
        found = self.projections.get(name)
        if found is None:
            raise ConfigurationError(
                f"no projection {name!r} here; known: {', '.join(sorted(self.projections))}"
            )
        return found

    async def step(self, name: str) -> int:
        """Apply the next batch to projection ``name``; the number of events read (0: caught up)."""
        projection = self._projection(name)
        lock = " FOR UPDATE" if self.database.dialect == "postgresql" else ""
        async with self.database.transaction() as sql:
            rows = await sql.fetch(
                f"SELECT position FROM {CHECKPOINTS} WHERE name = {{}}{lock}", (name,)
            )
            position = int(rows[0][0])
            events = await self.store.read_all(after=position, limit=self.batch)
            if not events:
                return 0
            for stored in events:
                await projection.apply(stored.event, sql)
            await sql.execute(_SET, (events[-1].position, time.time(), name))
        return len(events)

    async def catch_up(self, name: str | None = None, progress: Progress | None = None) -> int:
        """Apply everything stored so far to one projection (default: all); events read."""
        await self.connect()
        total = 0
        for each in [name] if name is not None else list(self.projections):
            head = await self.store.last_position()
            while True:
                read = await self.step(each)
                total += read
                if progress is not None:
                    status = await self._status(each, head)
                    progress(total, status.lag)
                if read < self.batch:
                    break
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Keep every projection caught up until ``stop`` is set (or the task is cancelled)."""
        await self.connect()
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if not await self.catch_up():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)

    async def rebuild(self, name: str, progress: Progress | None = None) -> int:
        """Empty projection ``name``'s read model (its ``resets`` hook) and replay it from
        the first event; the number of events read."""
        projection = self._projection(name)
        if projection.reset is None:
            raise ConfigurationError(
                f"projection {name!r} has no @resets function: a rebuild must empty its read "
                "model first"
            )
        await self.connect()
        async with self.database.transaction() as sql:
            await projection.reset(sql)
            await sql.execute(_SET, (0, time.time(), name))
        return await self.catch_up(name, progress)

    async def _status(self, name: str, head: int) -> ProjectionStatus:
        async with self.database.transaction() as sql:
            rows = await sql.fetch(
                f"SELECT position, updated_at FROM {CHECKPOINTS} WHERE name = {{}}", (name,)
            )
        position, updated = (int(rows[0][0]), float(rows[0][1])) if rows else (0, None)
        return ProjectionStatus(name, position, head, updated)

    async def status(self) -> list[ProjectionStatus]:
        """Each projection's checkpoint, the store's head and the lag."""
        await self.connect()
        head = await self.store.last_position()
        return [await self._status(name, head) for name in sorted(self.projections)]
