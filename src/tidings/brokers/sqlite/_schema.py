"""The embedded broker's database: tables, migrations, and opening a file safely.

Tables (inspect them with the ``sqlite3`` shell):

``tidings_meta``
    ``key``/``value`` pairs; ``schema_version`` and ``application = tidings``
    mark the file as ours.
``topics``
    one row per topic: ``id``, ``name``, ``partitions``, retention
    (``retention_ms``, ``retention_bytes``; NULL = keep forever), ``compact``.
``partition_heads``
    ``(topic_id, partition) -> next_offset``: where the next message goes.
``messages``
    the log: ``(topic_id, partition, offset)`` with ``key``, ``value`` (the
    encoded event), ``headers`` (JSON or NULL), ``published_at`` and
    ``deliver_at`` (Unix seconds).
``group_offsets``
    per consumer group and partition: ``committed`` (next offset to handle)
    and ``delivered`` (highest offset handed out, for attempt counts).
``members``
    live consumer-group members and their last ``heartbeat``.
``assignments``
    which member owns a group's partition, with the lease ``epoch`` that
    fences a member that lost it, and ``lease_until``.
``retries``
    scheduled redeliveries (``due``) and attempt counts of nacked messages.
``processed``
    exactly-once dedup records: ``(group, dedup_key)``.
``settled_ahead`` (version 2)
    per group and partition, ``ranges`` of offsets settled beyond
    ``committed`` (64-bit ``[start, end)`` pairs), skipped after a restart.
``schemas`` (version 3)
    the schema registry (:mod:`tidings.schemas.registry`): ``(type, version)``
    with the JSON Schema ``document`` and ``registered_at``.
``schema_modes`` (version 3)
    ``type -> mode``: the compatibility mode of an event type, when set.
``webhooks`` (version 4)
    webhook registrations (:mod:`tidings.webhooks`): ``id``, ``url``,
    ``topic``, ``secret``, ``filter`` (JSON or NULL), ``created_at``, and the
    delivery state ``paused``, ``failures`` (events failed in a row), ``last_error``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Literal

from tidings.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "Durability", "connect", "migrate"]

SCHEMA_VERSION = 4
Durability = Literal["full", "normal"]

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE tidings_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE topics (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        partitions INTEGER NOT NULL CHECK (partitions > 0),
        retention_ms INTEGER,
        retention_bytes INTEGER,
        compact INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE partition_heads (
        topic_id INTEGER NOT NULL REFERENCES topics(id),
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (topic_id, partition)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        key TEXT,
        value BLOB NOT NULL,
        headers TEXT,
        published_at REAL NOT NULL,
        deliver_at REAL,
        PRIMARY KEY (topic_id, partition, offset)
    ) WITHOUT ROWID;
    CREATE TABLE group_offsets (
        grp TEXT NOT NULL,
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        committed INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT -1,
        PRIMARY KEY (grp, topic_id, partition)
    ) WITHOUT ROWID;
    CREATE TABLE members (
        grp TEXT NOT NULL,
        member_id TEXT NOT NULL,
        topics TEXT NOT NULL,
        heartbeat REAL NOT NULL,
        PRIMARY KEY (grp, member_id)
    ) WITHOUT ROWID;
    CREATE TABLE assignments (
        grp TEXT NOT NULL,
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        member_id TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        lease_until REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (grp, topic_id, partition)
    ) WITHOUT ROWID;
    CREATE TABLE retries (
        grp TEXT NOT NULL,
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        due REAL NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (grp, topic_id, partition, offset)
    ) WITHOUT ROWID;
    CREATE TABLE processed (
        grp TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        processed_at REAL NOT NULL,
        PRIMARY KEY (grp, dedup_key)
    ) WITHOUT ROWID;
    """,
    2: """
    CREATE TABLE settled_ahead (
        grp TEXT NOT NULL,
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        ranges BLOB NOT NULL,
        PRIMARY KEY (grp, topic_id, partition)
    ) WITHOUT ROWID;
    """,
    3: """
    CREATE TABLE schemas (
        type TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        document TEXT NOT NULL,
        registered_at REAL NOT NULL,
        PRIMARY KEY (type, version)
    ) WITHOUT ROWID;
    CREATE TABLE schema_modes (type TEXT PRIMARY KEY, mode TEXT NOT NULL);
    """,
    4: """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        topic TEXT NOT NULL,
        secret TEXT NOT NULL,
        filter TEXT,
        created_at REAL NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    """,
}


def connect(path: str, durability: Durability, *, readonly: bool = False) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the durability asked for.

    Refuses (ConfigurationError, file untouched) a file that is not SQLite.
    """
    if durability not in ("full", "normal"):
        raise ConfigurationError(f"durability must be 'full' or 'normal', got {durability!r}")
    _check_permissions(path, readonly)
    # Never open the file from Python to sniff it: closing any handle on it drops
    # every POSIX lock this process holds there, including SQLite's own.
    uri = f"file:{path}?mode={'ro' if readonly else 'rwc'}"
    if readonly and _frozen(path):
        # Nobody can be writing (a writer needs the -wal file next to it), and SQLite
        # could not create its shared-memory file: read the file as it is.
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0
        )
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        _refuse_foreign(conn, path)
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise ConfigurationError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise ConfigurationError(
                f"{path} is not a SQLite database; refusing to touch it"
            ) from exc
        raise ConfigurationError(f"cannot open {path} as a tidings database: {exc}") from exc
    except ConfigurationError:
        conn.close()
        raise
    return conn


def _check_permissions(path: str, readonly: bool) -> None:
    """Say "permission denied" rather than SQLite's "unable to open database file"."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path):
        needed, what = (os.R_OK, path) if readonly else (os.R_OK | os.W_OK, path)
    else:
        needed, what = os.W_OK | os.X_OK, directory
    if not os.access(directory, os.X_OK):
        raise ConfigurationError(f"permission denied: {directory}")
    if not os.access(what, needed):
        raise ConfigurationError(f"permission denied: {what}")


def _frozen(path: str) -> bool:
    """A read-only directory holding the database and no write-ahead log."""
    directory = os.path.dirname(os.path.abspath(path))
    return not os.access(directory, os.W_OK) and not os.path.exists(path + "-wal")


def _refuse_foreign(conn: sqlite3.Connection, path: str) -> bool:
    """Raise for another application's database; True if the tidings schema exists.

    Read-only: it runs before anything (even the journal mode) is changed.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "tidings_meta" not in tables:
        raise ConfigurationError(
            f"{path} is a SQLite database of another application "
            f"(tables: {', '.join(sorted(tables)[:5])}); refusing to touch it"
        )
    return bool(tables)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Create or upgrade the schema; refuse a foreign or newer database untouched."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"cannot open {path} as a tidings database: {exc}") from exc
    try:
        if not _refuse_foreign(conn, path):
            version = 0
        else:
            row = conn.execute(
                "SELECT value FROM tidings_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                raise ConfigurationError(f"{path} has no tidings schema version; refusing it")
            version = int(row[0])
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{path} has schema version {version}, newer than this tidings "
                f"({SCHEMA_VERSION}); upgrade tidings"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO tidings_meta (key, value) VALUES "
                "('schema_version', ?), ('application', 'tidings')",
                (str(target),),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
