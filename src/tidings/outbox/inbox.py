"""The inbox: exactly-once handling on any broker, through the application's database.

For each handling, in one transaction of the application's database:

1. the event's ``(group, source, id)`` is inserted in the inbox table (a
   redelivery of an event already committed finds it there, and is acked
   without running the handler again);
2. the handler does its own writes through ``ctx.transaction``;
3. its follow-up events are written to the outbox table (a
   :class:`~tidings.outbox.Relay` publishes them);
4. the transaction commits, and only then is the delivery acked.

A crash before 4 rolls everything back (the event is delivered again); a crash
between the commit and the ack leads to a redelivery that is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any

from tidings.broker import Delivery, Message
from tidings.codec import Codec
from tidings.event import Event
from tidings.outbox._database import database_for
from tidings.outbox._sql import Sql
from tidings.outbox.schema import INBOX_TABLE, OUTBOX_TABLE, checked_name
from tidings.outbox.writer import Outbox

__all__ = ["Inbox"]

_CODEC = Codec()
_Open = tuple[contextlib.AsyncExitStack, Sql]


class _RolledBack(Exception):
    """Thrown into a transaction to end it without committing."""


class Inbox:
    """``App(exactly_once=Inbox(database))``: ``delivery="exactly_once"`` on any broker.

    ``database`` is where the handlers write: a ``postgresql://`` or
    ``sqlite:///`` URL, an asyncpg ``Pool``, a psycopg ``AsyncConnectionPool``,
    a SQLAlchemy ``AsyncEngine`` (handlers get an ``AsyncConnection``) or
    ``async_sessionmaker`` (handlers get an ``AsyncSession``). A handler
    writes through ``ctx.transaction``; it must not commit it.
    """

    def __init__(
        self, database: Any, *, table: str = INBOX_TABLE, outbox_table: str = OUTBOX_TABLE
    ) -> None:
        self.database = database_for(database)
        self.table = checked_name(table)
        self.outbox = Outbox(outbox_table)
        self._claim = (
            f'INSERT INTO {self.table} ("group", source, id) VALUES ({{}}, {{}}, {{}})'
            " ON CONFLICT DO NOTHING"
        )
        self._open: dict[int, _Open] = {}

    async def handled_before(self, delivery: Delivery, event: Event) -> bool:
        """False: :meth:`begin` finds a handled event, inside the transaction, as a failed
        attempt if the database cannot be reached (a query here would fail the subscription)."""
        return False

    async def begin(self, delivery: Delivery, event: Event) -> Any:
        opened = await self._open_transaction()
        stack, sql = opened
        try:
            claimed = await sql.execute(self._claim, (delivery.group, event.source, event.id))
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if not claimed:
            await _roll_back(stack)
            return None
        self._open[id(delivery)] = opened
        return sql.connection

    async def rollback(self, delivery: Delivery) -> None:
        opened = self._open.pop(id(delivery), None)
        if opened is not None:
            await _roll_back(opened[0])

    def commit(
        self, delivery: Delivery, event: Event | None, outputs: Sequence[tuple[str, Message]]
    ) -> Awaitable[bool]:
        return self._commit(delivery, event, outputs)

    async def _commit(
        self, delivery: Delivery, event: Event | None, outputs: Sequence[tuple[str, Message]]
    ) -> bool:
        opened = self._open.pop(id(delivery), None)
        if opened is None:  # not begun here: claim the event now
            opened = await self._open_transaction()
            if event is not None:
                claimed = await opened[1].execute(
                    self._claim, (delivery.group, event.source, event.id)
                )
                if not claimed:
                    await _roll_back(opened[0])
                    await delivery.ack()
                    return False
        await self.store(opened, outputs)
        await delivery.ack()
        return True

    async def store(self, opened: _Open, outputs: Sequence[tuple[str, Message]]) -> None:
        """Write the follow-ups to the outbox and commit the handling's transaction."""
        stack, sql = opened
        try:
            rows = [self._row(topic, message) for topic, message in outputs]
            if rows:
                await self.outbox.write(sql, rows)
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await stack.aclose()

    @staticmethod
    def _row(topic: str, message: Message) -> tuple[str, str | None, bytes]:
        if not message.headers:  # JSON structured mode already: stored as it is
            return topic, message.key, message.value
        event = _CODEC.decode(message.value, message.headers)
        return topic, message.key, _CODEC.encode_structured(event)

    async def _open_transaction(self) -> _Open:
        stack = contextlib.AsyncExitStack()
        sql = await stack.enter_async_context(self.database.transaction())
        return stack, sql

    async def close(self) -> None:
        """Close the connections this inbox opened itself (from a URL)."""
        await self.database.close()


async def _roll_back(stack: contextlib.AsyncExitStack) -> None:
    error = _RolledBack()
    await stack.__aexit__(_RolledBack, error, None)
