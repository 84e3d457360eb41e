"""The saga table: the one place that defines it.

One row per saga instance (default table ``tidings_sagas``):

===========  ==========================  ==============================
column       PostgreSQL                  SQLite
===========  ==========================  ==============================
saga         ``text``                    ``TEXT``   (the saga's name)
saga_id      ``text``                    ``TEXT``   (the correlation key)
version      ``bigint``                  ``INTEGER`` (optimistic concurrency)
completed    ``boolean``                 ``INTEGER`` (0 or 1)
document     ``text``: JSON, the state,  ``TEXT``
             the events handled and the
             commands each produced, the
             pending timeouts
updated_at   ``timestamptz``             ``TEXT`` (ISO 8601, UTC)
===========  ==========================  ==============================

The primary key is ``(saga, saga_id)``.
"""

from __future__ import annotations

from tidings.outbox._sql import Dialect
from tidings.outbox.schema import checked_name

__all__ = ["SAGA_TABLE", "statements"]

SAGA_TABLE = "tidings_sagas"


def statements(dialect: Dialect, table: str = SAGA_TABLE) -> list[str]:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of the saga table, for your migrations."""
    table = checked_name(table)
    if dialect == "postgresql":
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " saga text NOT NULL, saga_id text NOT NULL, version bigint NOT NULL,"
            " completed boolean NOT NULL, document text NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (saga, saga_id))"
        ]
    now = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " saga TEXT NOT NULL, saga_id TEXT NOT NULL, version INTEGER NOT NULL,"
        " completed INTEGER NOT NULL, document TEXT NOT NULL,"
        f" updated_at TEXT NOT NULL DEFAULT {now}, PRIMARY KEY (saga, saga_id))"
    ]
