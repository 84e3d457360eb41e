"""The outbox table appended events are written to when the bus is not the embedded broker.

The event store inserts one row per appended event in the same transaction
as the event itself; a relay (``tidings.outbox``) reads unsent rows in
``id`` order, publishes ``event`` to ``topic`` with ``key``, and sets
``sent_at``. Columns:

``id``
    the row's position (``bigserial`` on PostgreSQL, the rowid on SQLite):
    rows of one transaction are consecutive, and ids grow in commit order
    (appends take one lock, see the backends).
``topic``
    the topic to publish to.
``key``
    the partition key (the stream id), or NULL.
``event``
    the CloudEvent encoded with tidings' JSON structured codec
    (``Codec().encode_structured``), ready to publish as the message value.
``created_at``
    when the row was written (``timestamptz`` on PostgreSQL, Unix seconds on SQLite).
``sent_at``
    NULL until the relay has published the row.
"""

from __future__ import annotations

__all__ = ["OUTBOX_TABLE", "postgres_ddl", "sqlite_ddl"]

#: The table's default name.
OUTBOX_TABLE = "tidings_outbox"


def postgres_ddl(table: str = OUTBOX_TABLE) -> str:
    """``CREATE TABLE IF NOT EXISTS`` statements for PostgreSQL (in the search path's schema)."""
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        key text,
        event bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
    );
    CREATE INDEX IF NOT EXISTS {table}_unsent ON {table} (id) WHERE sent_at IS NULL;
    """


def sqlite_ddl(table: str = OUTBOX_TABLE) -> str:
    """``CREATE TABLE IF NOT EXISTS`` statements for SQLite."""
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        key TEXT,
        event BLOB NOT NULL,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX IF NOT EXISTS {table}_unsent ON {table} (id) WHERE sent_at IS NULL;
    """
