"""The schema registry's storage in the broker's own file (tables ``schemas``, ``schema_modes``).

Reads run on the reader's connection, writes in a writer transaction, so the
registry shares the database's durability and its many-process safety.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.brokers.sqlite import SqliteBroker

__all__ = ["SqliteSchemaStore"]


class SqliteSchemaStore:
    """A :class:`~tidings.schemas.registry.SchemaStore` in the embedded broker's database."""

    def __init__(self, broker: SqliteBroker) -> None:
        self.broker = broker

    async def stored_schemas(self, event_type: str) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT document FROM schemas WHERE type = ? ORDER BY version", (event_type,)
            )
            return [row[0] for row in rows]

        return await self.broker.reader.run(query)

    async def add_schema(self, event_type: str, version: int, text: str) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO schemas (type, version, document, registered_at) "
                "VALUES (?, ?, ?, ?)",
                (event_type, version, text, time.time()),
            )
            return cursor.rowcount == 1

        return await self.broker.writer.submit(insert)

    async def schema_types(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute("SELECT DISTINCT type FROM schemas ORDER BY 1")]

        return await self.broker.reader.run(query)

    async def schema_mode(self, event_type: str) -> str | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT mode FROM schema_modes WHERE type = ?", (event_type,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.broker.reader.run(query)

    async def set_schema_mode(self, event_type: str, mode: str) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO schema_modes (type, mode) VALUES (?, ?)", (event_type, mode)
            )

        await self.broker.writer.submit(upsert)
