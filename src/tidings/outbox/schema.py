"""The tables of the outbox and the inbox: the one place that defines them.

The outbox table (default ``tidings_outbox``), one row per event to publish:

===========  ============================  =====================================
column       PostgreSQL                    SQLite
===========  ============================  =====================================
position     ``bigserial`` primary key     ``INTEGER PRIMARY KEY AUTOINCREMENT``
topic        ``text``                      ``TEXT``
key          ``text`` null                 ``TEXT`` null
event        ``bytea``: the CloudEvent in  ``BLOB``
             JSON structured mode
created_at   ``timestamptz``               ``TEXT`` (ISO 8601, UTC)
sent_at      ``timestamptz`` null          ``TEXT`` null
===========  ============================  =====================================

Anything that writes rows of this shape in its own transaction (``Outbox.add``,
an event store) has them published by a :class:`~tidings.outbox.Relay`.
``<table>_leases`` holds the relays' leases: one row per partition of the keys
(PostgreSQL; several relays share them, and ``<table>_relays`` lists the live
ones) or a single row (SQLite: one relay at a time). The inbox table
(default ``tidings_inbox``) records the events each consumer group has handled.
"""

from __future__ import annotations

import re
from typing import Any

from tidings.errors import ConfigurationError
from tidings.outbox._database import database_for
from tidings.outbox._sql import Dialect, Sql, sql_for

__all__ = ["DEFAULT_PARTITIONS", "INBOX_TABLE", "OUTBOX_TABLE", "install", "statements"]

OUTBOX_TABLE = "tidings_outbox"
INBOX_TABLE = "tidings_inbox"
#: Partitions of the keys that relays lease on PostgreSQL (the most relays that help).
DEFAULT_PARTITIONS = 16
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}(\.[A-Za-z_][A-Za-z0-9_]{0,40})?")


def checked_name(name: str) -> str:
    """``name`` if it is a plain (optionally schema-qualified) SQL identifier."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"table name {name!r} must be letters, digits and underscores "
            "(optionally schema.table), starting with a letter or underscore"
        )
    return name


def _index_name(table: str, suffix: str) -> str:
    return f"{table.rsplit('.', 1)[-1]}_{suffix}"


def statements(
    dialect: Dialect, table: str = OUTBOX_TABLE, inbox_table: str = INBOX_TABLE
) -> list[str]:
    """The ``CREATE ... IF NOT EXISTS`` statements of the tables, for your migrations."""
    table, inbox_table = checked_name(table), checked_name(inbox_table)
    unsent = _index_name(table, "unsent")
    if dialect == "postgresql":
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " position bigserial PRIMARY KEY, topic text NOT NULL, key text,"
            " event bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
            " sent_at timestamptz)",
            f"CREATE INDEX IF NOT EXISTS {unsent} ON {table} (position) WHERE sent_at IS NULL",
            f"CREATE TABLE IF NOT EXISTS {table}_leases ("
            " partition integer PRIMARY KEY, owner text,"
            " expires_at timestamptz NOT NULL DEFAULT 'epoch', epoch bigint NOT NULL DEFAULT 0)",
            f"CREATE TABLE IF NOT EXISTS {table}_relays ("
            " owner text PRIMARY KEY, expires_at timestamptz NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {inbox_table} ("
            ' "group" text NOT NULL, source text NOT NULL, id text NOT NULL,'
            ' handled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY ("group", source, id))',
        ]
    now = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " position INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT,"
        f" event BLOB NOT NULL, created_at TEXT NOT NULL DEFAULT {now}, sent_at TEXT)",
        f"CREATE INDEX IF NOT EXISTS {unsent} ON {table} (position) WHERE sent_at IS NULL",
        f"CREATE TABLE IF NOT EXISTS {table}_leases ("
        " partition INTEGER PRIMARY KEY, owner TEXT,"
        " expires_at REAL NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0)",
        f"CREATE TABLE IF NOT EXISTS {inbox_table} ("
        ' "group" TEXT NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL,'
        f' handled_at TEXT NOT NULL DEFAULT {now}, PRIMARY KEY ("group", source, id))',
    ]


async def install_on(
    sql: Sql,
    table: str = OUTBOX_TABLE,
    inbox_table: str = INBOX_TABLE,
    partitions: int = DEFAULT_PARTITIONS,
) -> None:
    """Create the tables (if missing) through ``sql``, in its transaction."""
    if partitions < 1:
        raise ConfigurationError("partitions must be >= 1")
    for statement in statements(sql.dialect, table, inbox_table):
        await sql.execute(statement)
    # The partitions are fixed by the first install: later ones add none.
    rows = "generate_series(0, {} - 1)" if sql.dialect == "postgresql" else "0 + 0 * {}"
    await sql.execute(
        f"INSERT INTO {table}_leases (partition) SELECT {rows}"
        f" WHERE NOT EXISTS (SELECT 1 FROM {table}_leases) ON CONFLICT DO NOTHING",
        (partitions,),
    )


async def install(
    target: Any,
    *,
    table: str = OUTBOX_TABLE,
    inbox_table: str = INBOX_TABLE,
    partitions: int = DEFAULT_PARTITIONS,
) -> None:
    """Create the outbox, lease and inbox tables if they are missing.

    ``target`` is a connection (in your transaction: asyncpg, psycopg, SQLAlchemy
    async, sqlite3) or a database (URL, pool or engine) this opens one on.
    ``partitions`` (PostgreSQL) bounds how many relays share the work; it is
    fixed by the first install.
    """
    if partitions < 1:
        raise ConfigurationError("partitions must be >= 1")
    try:
        sql = sql_for(target)
    except ConfigurationError:
        database = database_for(target)
        try:
            async with database.transaction() as sql:
                await install_on(sql, table, inbox_table, partitions)
        finally:
            await database.close()
        return
    await install_on(sql, table, inbox_table, partitions)
