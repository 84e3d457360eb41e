"""Recording events in the outbox table, inside the caller's own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tidings.codec import Codec
from tidings.errors import InvalidEventError
from tidings.event import Event
from tidings.outbox._sql import Sql, sql_for
from tidings.outbox.schema import OUTBOX_TABLE, checked_name
from tidings.routing import validate_topic

__all__ = ["Outbox"]

_CODEC = Codec()


class Outbox:
    """Writes events to the outbox table; a :class:`~tidings.outbox.Relay` publishes them.

    ``add`` runs one ``INSERT`` on the connection it is given, so the event is
    stored if and only if the caller's transaction commits::

        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("INSERT INTO orders ...")
            await outbox.add(connection, "orders", app.event(OrderPlaced(...), key=order_id))

    The connection may be asyncpg, psycopg 3 (async), a SQLAlchemy 2
    ``AsyncSession``/``AsyncConnection`` or a ``sqlite3.Connection``.
    """

    def __init__(self, table: str = OUTBOX_TABLE) -> None:
        self.table = checked_name(table)
        self._insert = f"INSERT INTO {self.table} (topic, key, event) VALUES ({{}}, {{}}, {{}})"
        self._topics: set[str] = set()  # validated already

    def row(
        self, topic: str, event: Event, key: str | None = None
    ) -> tuple[str, str | None, bytes]:
        """The ``(topic, key, event)`` values of ``event``'s outbox row."""
        if not isinstance(event, Event):
            raise InvalidEventError(
                f"the outbox stores Events, not {type(event).__qualname__}: "
                "build one with app.event(payload, key=...)"
            )
        if topic not in self._topics:
            validate_topic(topic)
            if len(self._topics) < 10_000:
                self._topics.add(topic)
        if key is not None and key != event.key:
            event = event.replace(partitionkey=key)
        return topic, event.key, _CODEC.encode_structured(event)

    async def add(
        self, connection: Any, topic: str, event: Event, *, key: str | None = None
    ) -> None:
        """Record ``event`` for ``topic`` in ``connection``'s transaction.

        ``key`` (default: the event's partition key) orders it: the relay
        publishes the events of one key in the order they were added.
        """
        await self.add_many(connection, [(topic, event, key)])

    async def add_many(
        self, connection: Any, events: Iterable[tuple[str, Event, str | None]]
    ) -> None:
        """Record several ``(topic, event, key)`` in ``connection``'s transaction, in order."""
        rows = [self.row(topic, event, key) for topic, event, key in events]
        if rows:
            await self.write(sql_for(connection), rows)

    async def write(self, sql: Sql, rows: list[tuple[str, str | None, bytes]]) -> None:
        if len(rows) == 1:
            await sql.execute(self._insert, rows[0])
        else:
            await sql.execute_many(self._insert, rows)
