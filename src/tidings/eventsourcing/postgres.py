"""The event store in PostgreSQL (``postgresql://...``), through asyncpg.

Needs the ``postgres`` extra: ``pip install 'tidings[postgres]'``.

Tables, in the schema named by ``schema`` (created if missing):

``stored_events``
    ``(stream_id, version)`` primary key, ``position`` (bigserial, unique:
    the global order) and ``event`` (the CloudEvent, JSON structured encoding).
``snapshots``
    the latest snapshot per stream.
``tidings_outbox``
    appended events to publish (see :mod:`tidings.eventsourcing._outbox_table`).

An append is one statement (one round trip): it takes a transaction-scoped
advisory lock, checks the stream's version, inserts the events and their
outbox rows. The lock makes positions (and outbox ids) commit in the order
they were drawn, so a catch-up reader of ``read_all`` never skips an event
committed late. Two appends racing on one stream: the second finds the
first's version taken and raises :class:`~tidings.eventsourcing.VersionConflict`.

asyncpg was chosen over psycopg 3 by measuring the store's three operations
(``bench/_postgres_drivers.py``: a one-statement append, a 100-row insert,
reading 10,000 rows). In five runs on a shared two-core machine asyncpg was
ahead on single appends every time (by 2% to 66%) and on 100-row inserts
three times out of five; psycopg read 10,000 rows a little faster (about 5%)
in four runs of five. Appends are what the store does most, and asyncpg has
its pool built in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

try:
    import asyncpg
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the PostgreSQL event store needs asyncpg: pip install 'tidings[postgres]'"
    ) from None

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError, StorageError
from tidings.errors import ConnectionError as TidingsConnectionError
from tidings.event import Event
from tidings.eventsourcing import _outbox_table
from tidings.eventsourcing._encoding import decode_rows, encode_events
from tidings.eventsourcing._lifecycle import Lifecycle
from tidings.eventsourcing.store import (
    Snapshot,
    StoredEvent,
    TopicFor,
    VersionConflict,
    check_append,
    check_read,
    topic_function,
)

__all__ = ["PostgresEventStore"]

#: The advisory lock key appends take (any fixed 64-bit number, the same for all).
_APPEND_LOCK = 0x7469_6469_6E67_7301
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")

_TABLES = """
CREATE TABLE IF NOT EXISTS stored_events (
    stream_id text NOT NULL,
    version integer NOT NULL,
    position bigserial NOT NULL UNIQUE,
    event bytea NOT NULL,
    PRIMARY KEY (stream_id, version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id text PRIMARY KEY,
    version integer NOT NULL,
    type text NOT NULL,
    state bytea NOT NULL
);
"""
# $1 stream, $2 expected version (NULL: any), $3 encoded events, $4 their topics.
_HEAD = f"""
WITH locked AS (SELECT pg_advisory_xact_lock({_APPEND_LOCK}) AS done),
head AS (
    SELECT (SELECT coalesce(max(version), 0) FROM stored_events WHERE stream_id = $1) AS version
    FROM locked
),
stored AS (
    INSERT INTO stored_events (stream_id, version, event)
    SELECT $1, head.version + e.n, e.event
    FROM head, unnest($3::bytea[]) WITH ORDINALITY AS e(event, n)
    WHERE $2::integer IS NULL OR head.version = $2::integer
    ORDER BY e.n
    RETURNING version, position, event
)"""
_OUTBOX = f""",
published AS (
    INSERT INTO {_outbox_table.OUTBOX_TABLE} (topic, key, event)
    SELECT ($4::text[])[stored.version - head.version], $1, stored.event
    FROM stored, head ORDER BY stored.version
)"""
_RESULT = """
SELECT head.version, (SELECT array_agg(position ORDER BY version) FROM stored) FROM head"""
_APPEND = _HEAD + _RESULT
_APPEND_PUBLISHED = _HEAD + _OUTBOX + _RESULT
_COLUMNS = "stream_id, version, position, event"
# One round trip: the snapshot (a row with a NULL stream_id) and then the events after it.
_READ_FROM_SNAPSHOT = f"""
WITH snapshot AS (SELECT version, state FROM snapshots WHERE stream_id = $1 AND type = $2)
SELECT * FROM (
    SELECT NULL::text AS stream_id, version, NULL::bigint AS position, state AS event
    FROM snapshot
    UNION ALL
    SELECT {_COLUMNS} FROM stored_events
    WHERE stream_id = $1 AND version > coalesce((SELECT version FROM snapshot), 0)
) AS rows ORDER BY stream_id NULLS FIRST, version"""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query (a round trip) when a connection goes back to the pool.

    The store leaves nothing in a session to reset: no LISTEN, no session-level
    advisory lock, no SET. asyncpg still rolls back a transaction left open.
    """


class PostgresEventStore(Lifecycle):
    """An :class:`~tidings.eventsourcing.EventStore` in PostgreSQL.

    ``url``: ``postgresql://user@host:port/database``. ``schema``: where the
    tables live (created if missing). ``topic``: where appended events are
    published through the outbox (a name or a function of the event; None:
    no outbox rows). ``max_connections``: the pool's size.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "public",
        topic: TopicFor | None = "events",
        max_connections: int = 10,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(f"not a postgresql:// URL: {redact_url(url)!r}")
        if not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(
                f"schema must be a lower-case SQL identifier (letters, digits, _), got {schema!r}"
            )
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        self.url = url
        self.schema = schema
        self._topic = topic_function(topic)
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:
        return f"<PostgresEventStore {redact_url(self.url)} schema={self.schema}>"

    async def connect(self) -> None:
        if self._closed:
            raise self.not_open()
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._max_connections,
                server_settings={"search_path": self.schema},
                reset=_keep_session,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise TidingsConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}"
            ) from exc
        try:
            async with pool.acquire() as conn, conn.transaction():
                # One creator at a time: CREATE ... IF NOT EXISTS races with itself.
                await conn.execute(f"SELECT pg_advisory_xact_lock({_APPEND_LOCK})")
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                await conn.execute(_TABLES + _outbox_table.postgres_ddl())
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            raise self.not_open()
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return await self._connected().fetch(sql, *args)  # type: ignore[no-any-return]
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise TidingsConnectionError(f"PostgreSQL connection failed: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(f"the PostgreSQL event store failed: {exc}") from exc

    # -- appending -------------------------------------------------------------

    async def append(
        self, stream_id: str, events: Sequence[Event], expected_version: int | None
    ) -> list[StoredEvent]:
        check_append(stream_id, events, expected_version)
        stamped, blobs = encode_events(stream_id, events)
        args: tuple[Any, ...] = (stream_id, expected_version, blobs)
        sql = _APPEND
        if self._topic is not None:
            sql = _APPEND_PUBLISHED
            args += ([self._topic(event) for event in stamped],)
        while True:
            try:
                ((version, positions),) = await self._fetch(sql, *args)
            except StorageError as exc:
                if not isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                    raise
                # A concurrent append took the versions (our snapshot predates its commit).
                actual = await self._version(stream_id)
                if expected_version is None:
                    continue
                raise VersionConflict(stream_id, expected_version, actual) from None
            if expected_version is not None and version != expected_version:
                raise VersionConflict(stream_id, expected_version, version)
            break
        return [
            StoredEvent(stream_id, version + i, position, event)
            for i, (event, position) in enumerate(zip(stamped, positions or (), strict=True), 1)
        ]

    async def _version(self, stream_id: str) -> int:
        rows = await self._fetch(
            "SELECT coalesce(max(version), 0) FROM stored_events WHERE stream_id = $1", stream_id
        )
        return int(rows[0][0])

    # -- reading ---------------------------------------------------------------

    async def read(
        self,
        stream_id: str,
        *,
        start: int | None = None,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        check_read(start, limit)
        if backward:
            sql = f"SELECT {_COLUMNS} FROM stored_events WHERE stream_id = $1 AND version <= $2 "
            sql += "ORDER BY version DESC LIMIT $3"
            bound = start if start is not None else 2**31 - 1
        else:
            sql = f"SELECT {_COLUMNS} FROM stored_events WHERE stream_id = $1 AND version >= $2 "
            sql += "ORDER BY version LIMIT $3"
            bound = start or 0
        return decode_rows(await self._fetch(sql, stream_id, bound, limit))

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        check_read(after, limit)
        sql = f"SELECT {_COLUMNS} FROM stored_events WHERE position > $1 ORDER BY position LIMIT $2"
        return decode_rows(await self._fetch(sql, after, limit))

    async def last_position(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(position), 0) FROM stored_events")
        return int(rows[0][0])

    # -- snapshots ---------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._fetch(
            "INSERT INTO snapshots VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO UPDATE "
            "SET version = excluded.version, type = excluded.type, state = excluded.state "
            "WHERE excluded.version > snapshots.version",
            snapshot.stream_id,
            snapshot.version,
            snapshot.type,
            snapshot.state,
        )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        rows = await self._fetch(
            "SELECT version, type, state FROM snapshots WHERE stream_id = $1", stream_id
        )
        if not rows:
            return None
        version, type_, state = rows[0]
        return Snapshot(stream_id, version, type_, bytes(state))

    async def read_from_snapshot(
        self, stream_id: str, snapshot_type: str
    ) -> tuple[Snapshot | None, list[StoredEvent]]:
        rows = await self._fetch(_READ_FROM_SNAPSHOT, stream_id, snapshot_type)
        snapshot = None
        if rows and rows[0][0] is None:  # the snapshot's row comes first
            _, version, _, state = rows.pop(0)
            snapshot = Snapshot(stream_id, version, snapshot_type, bytes(state))
        return snapshot, decode_rows(rows)
