"""The event store in a SQLite file: the embedded broker's file, or one of its own.

Tables (next to the broker's, see :mod:`tidings.brokers.sqlite._schema`):

``stored_events``
    ``(stream_id, version)`` -> ``position`` (unique, the global order) and
    ``event`` (the CloudEvent, JSON structured encoding).
``snapshots``
    the latest snapshot per stream: ``version``, ``type``, ``state``.

Appends go through the embedded broker's group-commit writer: appends of
concurrent tasks share a transaction (and an fsync), each in its own
savepoint. SQLite lets one writer in at a time, so positions grow in commit
order. With ``publish="broker"`` the appended events are added to the
broker's topic log in the same transaction (subscribers of any process on
the file see them); with ``publish="outbox"`` they go to the outbox table.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal

from tidings.broker import Message
from tidings.brokers.sqlite import _ops
from tidings.brokers.sqlite._config import SqliteConfig
from tidings.brokers.sqlite._reader import Reader
from tidings.brokers.sqlite._schema import Durability
from tidings.brokers.sqlite._writer import Writer
from tidings.errors import ConfigurationError
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

__all__ = ["SqliteEventStore"]

Publish = Literal["broker", "outbox"]

_TABLES = (
    """CREATE TABLE IF NOT EXISTS stored_events (
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        position INTEGER NOT NULL UNIQUE,
        event BLOB NOT NULL,
        PRIMARY KEY (stream_id, version)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        stream_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        state BLOB NOT NULL
    ) WITHOUT ROWID""",
)
_COLUMNS = "stream_id, version, position, event"
_INSERT = "INSERT INTO stored_events VALUES (?, ?, ?, ?)"
_READ_AFTER = (
    f"SELECT {_COLUMNS} FROM stored_events WHERE stream_id = ? AND version > ? ORDER BY version"
)


class SqliteEventStore(Lifecycle):
    """An :class:`~tidings.eventsourcing.EventStore` in a SQLite file.

    ``topic``: where appended events are published (a name or a function of the
    event; None: not published). ``publish``: ``"broker"`` writes them to the
    embedded broker's log in this file, ``"outbox"`` to the outbox table for
    a relay to forward to another broker. ``partitions``: for topics this
    creates. ``durability``: as the embedded broker's (``full`` fsyncs each commit).
    """

    def __init__(
        self,
        path: str,
        *,
        topic: TopicFor | None = "events",
        publish: Publish = "broker",
        durability: Durability = "full",
        partitions: int = 4,
        busy_timeout: float = 30.0,
    ) -> None:
        if publish not in ("broker", "outbox"):
            raise ConfigurationError(f"publish must be 'broker' or 'outbox', got {publish!r}")
        self.config = SqliteConfig(
            path, durability=durability, partitions=partitions, busy_timeout=busy_timeout
        )
        self.path = path
        self.publish = publish
        self._topic = topic_function(topic)
        self._reader: Reader | None = None
        self._writer: Writer | None = None

    @classmethod
    def from_url(
        cls, url: str, *, topic: TopicFor | None = "events", publish: Publish = "broker"
    ) -> SqliteEventStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (broker URL options apply)."""
        config = SqliteConfig.from_url(url)
        return cls(
            config.path,
            topic=topic,
            publish=publish,
            durability=config.durability,
            partitions=config.partitions,
            busy_timeout=config.busy_timeout,
        )

    def __repr__(self) -> str:
        return f"<SqliteEventStore {self.path} publish={self.publish}>"

    async def connect(self) -> None:
        if self._closed:
            raise self.not_open()
        if self._writer is not None:
            return
        config = self.config
        reader, conn = await Reader.open(config.path, config.durability)
        conn.execute("PRAGMA busy_timeout = 0")  # the writer waits in short steps itself
        writer = Writer(
            conn,
            config.path + "-wal",
            name="tidings-event-store-writer",
            db_path=config.path,
            busy_timeout=config.busy_timeout,
        )
        self._reader, self._writer = reader, writer
        await writer.submit(_create_tables)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if writer is not None:
            await asyncio.to_thread(writer.close)
            writer.conn.close()
        if reader is not None:
            await reader.close()

    def _connected(self) -> tuple[Reader, Writer]:
        if self._writer is None or self._reader is None:
            raise self.not_open()
        return self._reader, self._writer

    # -- appending -------------------------------------------------------------

    async def append(
        self, stream_id: str, events: Sequence[Event], expected_version: int | None
    ) -> list[StoredEvent]:
        check_append(stream_id, events, expected_version)
        _, writer = self._connected()
        stamped, blobs = encode_events(stream_id, events)
        topics = [self._topic(event) for event in stamped] if self._topic is not None else None
        append = _Append(
            stream_id, expected_version, blobs, topics, self.publish, self.config.partitions
        )
        version, position = await writer.submit(append)
        return [
            StoredEvent(stream_id, version + i, position + i, event)
            for i, event in enumerate(stamped, 1)
        ]

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
        reader, _ = self._connected()
        if backward:
            sql = f"SELECT {_COLUMNS} FROM stored_events WHERE stream_id = ? AND version <= ? "
            sql += "ORDER BY version DESC LIMIT ?"
            bound = start if start is not None else 2**62
        else:
            sql = f"SELECT {_COLUMNS} FROM stored_events WHERE stream_id = ? AND version >= ? "
            sql += "ORDER BY version LIMIT ?"
            bound = start or 0
        args = (stream_id, bound, -1 if limit is None else limit)
        rows = await reader.run(lambda conn: conn.execute(sql, args).fetchall())
        return decode_rows(rows)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        check_read(after, limit)
        reader, _ = self._connected()
        sql = f"SELECT {_COLUMNS} FROM stored_events WHERE position > ? ORDER BY position LIMIT ?"
        rows = await reader.run(lambda conn: conn.execute(sql, (after, limit)).fetchall())
        return decode_rows(rows)

    async def last_position(self) -> int:
        reader, _ = self._connected()
        return await reader.run(_last_position)

    # -- snapshots ---------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        _, writer = self._connected()
        row = (snapshot.stream_id, snapshot.version, snapshot.type, snapshot.state)
        await writer.submit(
            lambda conn: conn.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE "
                "SET version = excluded.version, type = excluded.type, state = excluded.state "
                "WHERE excluded.version > snapshots.version",
                row,
            )
        )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        reader, _ = self._connected()
        row = await reader.run(
            lambda conn: conn.execute(
                "SELECT version, type, state FROM snapshots WHERE stream_id = ?", (stream_id,)
            ).fetchone()
        )
        return None if row is None else Snapshot(stream_id, row[0], row[1], bytes(row[2]))

    async def read_from_snapshot(
        self, stream_id: str, snapshot_type: str
    ) -> tuple[Snapshot | None, list[StoredEvent]]:
        reader, _ = self._connected()

        def query(conn: sqlite3.Connection) -> tuple[Snapshot | None, list[Any]]:
            # Stored events never change: the events after the snapshot read a
            # moment later are the ones that follow it (no transaction needed).
            row = conn.execute(
                "SELECT version, state FROM snapshots WHERE stream_id = ? AND type = ?",
                (stream_id, snapshot_type),
            ).fetchone()
            snapshot = None
            if row is not None:
                snapshot = Snapshot(stream_id, row[0], snapshot_type, bytes(row[1]))
            after = 0 if snapshot is None else snapshot.version
            return snapshot, conn.execute(_READ_AFTER, (stream_id, after)).fetchall()

        snapshot, rows = await reader.run(query)
        return snapshot, decode_rows(rows)


def _create_tables(conn: sqlite3.Connection) -> None:
    for statement in _TABLES:
        conn.execute(statement)
    for statement in _outbox_table.sqlite_ddl().split(";"):
        if statement.strip():
            conn.execute(statement)


def _last_position(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(position), 0) FROM stored_events").fetchone()[0])


class _Append:
    """One append, run by the writer inside its transaction: check, store, publish."""

    __slots__ = ("blobs", "expected", "partitions", "publish", "stream_id", "topics")

    def __init__(
        self,
        stream_id: str,
        expected: int | None,
        blobs: list[bytes],
        topics: list[str] | None,
        publish: Publish,
        partitions: int,
    ) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.blobs = blobs
        self.topics = topics
        self.publish = publish
        self.partitions = partitions

    def __call__(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """The stream's version and the global position before this append."""
        stream_id = self.stream_id
        version = conn.execute(
            "SELECT coalesce(max(version), 0) FROM stored_events WHERE stream_id = ?",
            (stream_id,),
        ).fetchone()[0]
        if self.expected is not None and version != self.expected:
            raise VersionConflict(stream_id, self.expected, version)
        blobs = self.blobs
        if not blobs:
            return version, 0
        position = _last_position(conn)
        if len(blobs) == 1:
            conn.execute(_INSERT, (stream_id, version + 1, position + 1, blobs[0]))
        else:
            conn.executemany(
                _INSERT,
                [(stream_id, version + i, position + i, b) for i, b in enumerate(blobs, 1)],
            )
        if self.topics is not None:
            self._publish(conn)
        return version, position

    def _publish(self, conn: sqlite3.Connection) -> None:
        assert self.topics is not None
        now = time.time()
        key = self.stream_id
        pairs = zip(self.topics, self.blobs, strict=True)
        if self.publish == "outbox":
            conn.executemany(
                f"INSERT INTO {_outbox_table.OUTBOX_TABLE} (topic, key, event) VALUES (?, ?, ?)",
                [(topic, key, blob) for topic, blob in pairs],
            )
            return
        by_topic: dict[str, list[Message]] = {}
        for topic, blob in pairs:
            by_topic.setdefault(topic, []).append(Message(blob, key=key))
        for name, messages in by_topic.items():
            topic_id, partitions = _ops.find_or_create_topic(conn, name, self.partitions, now)
            _ops.append(conn, topic_id, partitions, messages, now, 0)
