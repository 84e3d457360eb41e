"""The relay: publishes the outbox table's rows to a broker, then marks them sent.

Guarantees (see ``docs/outbox.md``):

* at least once: a row is marked sent only after the broker accepted it; a
  relay killed in between publishes it again after restart (or another relay
  does, once its lease expired). No row is ever skipped.
* in order per key: the rows of one key are published in ``position`` order,
  each batch only after the one before it was accepted.
* several relays (PostgreSQL) split the keys' partitions by lease; in normal
  operation no row is published twice. SQLite: one relay holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from tidings.app import App
from tidings.broker import Broker
from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.outbox._database import database_for
from tidings.outbox._leases import Leases, PostgresLeases, SqliteLeases
from tidings.outbox._sql import Sql
from tidings.outbox.schema import OUTBOX_TABLE, checked_name

__all__ = ["Relay"]

log = logging.getLogger("tidings.outbox")
_CODEC = Codec()
Row = tuple[int, str, bytes]  # position, topic, event


class Relay:
    """Publishes what was recorded in the outbox table, in order per key, at least once.

    ``database``: a ``postgresql://`` or ``sqlite:///`` URL, an asyncpg
    ``Pool``, a psycopg ``AsyncConnectionPool`` or a SQLAlchemy ``AsyncEngine``.
    ``publish_to``: an :class:`~tidings.App` (its publish middleware and codec
    apply), a broker, or a broker URL. ``name`` must be unique among running
    relays (default: host, pid and a random part); a relay restarted under the
    same name takes its partitions back at once instead of after ``lease_ttl``.

    Run it with ``await relay.run()`` (until :meth:`stop`), as ``async with
    relay:`` (in the background), or call :meth:`relay_once` yourself.
    """

    def __init__(
        self,
        database: Any,
        publish_to: App | Broker | str,
        *,
        table: str = OUTBOX_TABLE,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        lease_ttl: float = 10.0,
        name: str | None = None,
    ) -> None:
        if batch_size < 1 or poll_interval <= 0 or lease_ttl <= 0:
            raise ConfigurationError("batch_size must be >= 1; poll_interval and lease_ttl > 0")
        self.database = database_for(database)
        self._owns_app = not isinstance(publish_to, App)
        self.app = publish_to if isinstance(publish_to, App) else App("tidings-relay", publish_to)
        self.table = checked_name(table)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        kind = PostgresLeases if self.database.dialect == "postgresql" else SqliteLeases
        self.leases: Leases = kind(self.table, self.name, lease_ttl)
        #: Rows published (and marked sent) by this relay.
        self.relayed = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- one step ------------------------------------------------------------------

    async def relay_once(self) -> int:
        """Renew the leases if due, publish one batch, mark it sent; return its size."""
        if not self.leases.valid():
            async with self.database.transaction() as sql:
                await self.leases.renew(sql)
            if not self.leases.partitions:
                return 0
        async with self.database.transaction() as sql:
            rows = await self._unsent(sql)
        if not rows:
            return 0
        published: list[int] = []
        try:
            await self._publish(rows, published)
        finally:
            if published:
                async with self.database.transaction() as sql:
                    await self._mark_sent(sql, published)
                self.relayed += len(published)
        return len(published)

    async def _unsent(self, sql: Sql) -> list[Row]:
        t, limit = self.table, self.batch_size
        leases = self.leases
        if sql.dialect == "sqlite" or len(leases.partitions) == leases.count:
            statement = (
                f"SELECT position, topic, event FROM {t} WHERE sent_at IS NULL"
                " ORDER BY position LIMIT {}"
            )
            params: tuple[Any, ...] = (limit,)
        else:
            statement = (
                f"SELECT position, topic, event FROM {t} WHERE sent_at IS NULL AND"
                f" (CASE WHEN key IS NULL THEN position % {leases.count}"
                f" ELSE (hashtext(key) & 2147483647) % {leases.count} END)"
                " = ANY(CAST({} AS int[])) ORDER BY position LIMIT {}"
            )
            params = (leases.partitions, limit)
        return [
            (int(p), str(topic), bytes(event))
            for p, topic, event in await sql.fetch(statement, params)
        ]

    async def _publish(self, rows: Sequence[Row], published: list[int]) -> None:
        """Publish ``rows`` in order, in runs of one topic; ``published`` collects positions."""
        start = 0
        while start < len(rows):
            if not self.leases.valid():
                return  # the lease may be gone: the rest waits for the next round
            topic = rows[start][1]
            end = start
            while end < len(rows) and rows[end][1] == topic:
                end += 1
            run = rows[start:end]
            events: list[Event] = [_CODEC.decode_structured(event) for _, _, event in run]
            await self.app.publish_batch(events, topic=topic)
            published.extend(position for position, _, _ in run)
            start = end

    async def _mark_sent(self, sql: Sql, positions: list[int]) -> None:
        t = self.table
        if sql.dialect == "postgresql":
            await sql.execute(
                f"UPDATE {t} SET sent_at = now() WHERE position = ANY(CAST({{}} AS bigint[]))",
                (positions,),
            )
            return
        for start in range(0, len(positions), 500):
            chunk = positions[start : start + 500]
            await sql.execute(
                f"UPDATE {t} SET sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                f" WHERE position IN ({', '.join('{}' for _ in chunk)})",
                chunk,
            )

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Relay until :meth:`stop`; errors are logged and retried with a growing pause."""
        self._stopping.clear()
        backoff = self.poll_interval
        try:
            while not self._stopping.is_set():
                try:
                    count = await self.relay_once()
                except Exception as exc:
                    log.warning("outbox relay %s: %r; retrying in %.2gs", self.name, exc, backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = self.poll_interval
                if count < self.batch_size:
                    await self._pause(self.poll_interval if count == 0 else 0)
        finally:
            await self._close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            async with self.database.transaction() as sql:
                await self.leases.release(sql)
        if self._owns_app:
            await self.app.stop()
        await self.database.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress."""
        self._stopping.set()

    async def __aenter__(self) -> Relay:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._task is not None:
            await self._task
