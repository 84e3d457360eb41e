"""The read side of the embedded broker: its own connection, on its own thread.

Reads never wait behind the writer's transactions (WAL readers see the last
commit), and never block the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tidings.brokers.sqlite._schema import Durability, connect, migrate
from tidings.errors import BrokerClosedError, ConfigurationError, StorageError

__all__ = ["Reader", "Row"]

T = TypeVar("T")
#: A ``messages`` row as fetched: (offset, key, value, headers, published_at, deliver_at).
Row = tuple[Any, ...]
_COLUMNS = "offset, key, value, headers, published_at, deliver_at"


def _open(path: str, durability: Durability) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigurationError(f"directory {directory} does not exist")
    conn = connect(path, durability)
    try:
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn, connect(path, durability)


class Reader:
    """Runs read queries on a dedicated connection and thread."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: str) -> None:
        self._conn = conn
        self._path = path
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str, durability: Durability) -> tuple[Reader, sqlite3.Connection]:
        """Create or migrate the database; return a reader and a connection for the writer."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-reader")
        try:
            conn, reader = await asyncio.get_running_loop().run_in_executor(
                executor, _open, path, durability
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(reader, executor, path), conn

    @classmethod
    async def open_read_only(cls, path: str, durability: Durability) -> Reader:
        """A reader of an existing database that never writes to it (nor migrates it)."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-reader")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(
                executor, lambda: connect(path, durability, readonly=True)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, path)

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise BrokerClosedError("the embedded broker is not connected (or is closed)")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, query, conn)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"reading {self._path} failed: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    async def messages(
        self, requests: Sequence[tuple[int, int, list[int], int, int]]
    ) -> list[tuple[list[Row], list[Row]]]:
        """For each (topic_id, partition, due offsets, cursor, count): the due rows and new rows.

        Due offsets no longer stored are left out; new rows are up to ``count``
        rows from ``cursor`` on, fewer where retention removed some.
        """

        def query(conn: sqlite3.Connection) -> list[tuple[list[Row], list[Row]]]:
            out = []
            for topic_id, p, due, cursor, count in requests:
                due_rows = [
                    conn.execute(
                        f"SELECT {_COLUMNS} FROM messages "
                        "WHERE topic_id = ? AND partition = ? AND offset = ?",
                        (topic_id, p, offset),
                    ).fetchone()
                    for offset in due
                ]
                fresh_rows = []
                if count:
                    fresh_rows = conn.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE topic_id = ? AND partition = ? "
                        "AND offset >= ? ORDER BY offset LIMIT ?",
                        (topic_id, p, cursor, count),
                    ).fetchall()
                out.append(([r for r in due_rows if r is not None], fresh_rows))
            return out

        return await self.run(query)

    async def heads(self, topic_ids: Sequence[int]) -> dict[int, dict[int, int]]:
        """Per topic and partition, the next offset to be written."""
        marks = ",".join("?" * len(topic_ids))
        rows = await self.run(
            lambda conn: conn.execute(
                "SELECT topic_id, partition, next_offset FROM partition_heads "
                f"WHERE topic_id IN ({marks})",
                tuple(topic_ids),
            ).fetchall()
        )
        by_topic: dict[int, dict[int, int]] = {}
        for topic_id, p, head in rows:
            by_topic.setdefault(topic_id, {})[p] = head
        return by_topic

    async def live_members(self, groups: Sequence[str], alive_since: float) -> dict[str, int]:
        """How many members of each group heartbeated since ``alive_since``."""
        marks = ",".join("?" * len(groups))
        rows = await self.run(
            lambda conn: conn.execute(
                f"SELECT grp, COUNT(*) FROM members WHERE grp IN ({marks}) "
                "AND heartbeat >= ? GROUP BY grp",
                (*groups, alive_since),
            ).fetchall()
        )
        return {group: int(count) for group, count in rows}
