"""The outbox table appended events go to when the bus is not the embedded broker.

It is :mod:`tidings.outbox`'s own table (``tidings_outbox``: ``position``,
``topic``, ``key``, ``event``, ``created_at``, ``sent_at``; see
``docs/outbox.md``), created here with its lease tables if missing, so that a
:class:`tidings.outbox.Relay` on the same database publishes the stored events
in ``position`` order, per key, and marks them sent. The event store inserts
``topic``, ``key`` (the stream id) and ``event`` (the CloudEvent in tidings'
JSON structured mode) in the append's own transaction.
"""

from __future__ import annotations

from tidings.outbox.schema import DEFAULT_PARTITIONS, OUTBOX_TABLE, statements

__all__ = ["OUTBOX_TABLE", "postgres_ddl", "sqlite_ddl"]

_LEASES = (
    f"INSERT INTO {OUTBOX_TABLE}_leases (partition) SELECT {{rows}} "
    f"WHERE NOT EXISTS (SELECT 1 FROM {OUTBOX_TABLE}_leases) ON CONFLICT DO NOTHING"
)


def postgres_ddl() -> str:
    """The statements (``;``-separated) that create the outbox tables on PostgreSQL."""
    leases = _LEASES.format(rows=f"generate_series(0, {DEFAULT_PARTITIONS - 1})")
    return ";\n".join([*statements("postgresql"), leases]) + ";"


def sqlite_ddl() -> str:
    """The statements (``;``-separated) that create the outbox tables on SQLite."""
    return ";\n".join([*statements("sqlite"), _LEASES.format(rows="0")]) + ";"
