"""Saga instances in PostgreSQL or SQLite, through the outbox's database layer."""

from __future__ import annotations

import asyncio
from typing import Any

from tidings.outbox._database import database_for
from tidings.sagas.schema import SAGA_TABLE, statements
from tidings.sagas.store import StoredSaga, conflict

__all__ = ["SqlSagaStore"]

_NOW = {"postgresql": "now()", "sqlite": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"}


class SqlSagaStore:
    """A :class:`~tidings.sagas.SagaStore` on a SQL database.

    ``database`` is what :class:`~tidings.outbox.Inbox` takes: a
    ``postgresql://`` or ``sqlite:///path`` URL, an asyncpg ``Pool``, a
    psycopg ``AsyncConnectionPool``, a SQLAlchemy ``AsyncEngine`` or
    ``async_sessionmaker``. The table (:mod:`tidings.sagas.schema`) is created
    on first use unless ``create_table=False`` (then create it with your
    migrations, from :func:`tidings.sagas.schema.statements`).
    """

    def __init__(
        self, database: Any, *, table: str = SAGA_TABLE, create_table: bool = True
    ) -> None:
        self.database = database_for(database)
        self._statements = statements(self.database.dialect, table)
        self._ready = not create_table
        self._lock = asyncio.Lock()
        self._select = (
            f"SELECT document, completed, version FROM {table} WHERE saga = {{}} AND saga_id = {{}}"
        )
        self._insert = (
            f"INSERT INTO {table} (saga, saga_id, version, completed, document)"
            " VALUES ({}, {}, 1, {}, {}) ON CONFLICT DO NOTHING"
        )
        self._update = (
            f"UPDATE {table} SET version = version + 1, completed = {{}}, document = {{}},"
            f" updated_at = {_NOW[self.database.dialect]}"
            " WHERE saga = {} AND saga_id = {} AND version = {}"
        )

    async def _create(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                async with self.database.transaction() as sql:
                    for statement in self._statements:
                        await sql.execute(statement)
                self._ready = True

    async def load(self, saga: str, saga_id: str) -> StoredSaga | None:
        await self._create()
        async with self.database.transaction() as sql:
            rows = await sql.fetch(self._select, (saga, saga_id))
        if not rows:
            return None
        document, completed, version = rows[0]
        return StoredSaga(str(document), bool(completed), int(version))

    async def save(
        self, saga: str, saga_id: str, document: str, completed: bool, expected: int
    ) -> int:
        await self._create()
        async with self.database.transaction() as sql:
            if expected == 0:
                changed = await sql.execute(self._insert, (saga, saga_id, completed, document))
            else:
                changed = await sql.execute(
                    self._update, (completed, document, saga, saga_id, expected)
                )
        if changed != 1:
            raise conflict(saga, saga_id, expected)
        return expected + 1

    async def close(self) -> None:
        """Close the connections this store opened itself (from a URL)."""
        await self.database.close()
