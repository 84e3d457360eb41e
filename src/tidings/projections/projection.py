"""A projection: handlers per event type that change a read model inside a transaction.

::

    totals = Projection("order-totals")

    @totals.on("OrderPlaced")
    async def placed(event: Event, sql: Sql) -> None:
        await sql.execute("INSERT INTO totals (id, total) VALUES ({}, {})",
                          (event.subject, event.data["total"]))

    @totals.resets
    async def clear(sql: Sql) -> None:
        await sql.execute("DELETE FROM totals")

Handlers receive the stored :class:`~tidings.event.Event` and the open
transaction (``sql.execute`` / ``sql.fetch`` with ``{}`` placeholders, or
``sql.connection``: the driver's own connection). They must not commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tidings.errors import ConfigurationError
from tidings.event import Event

__all__ = ["Apply", "Projection", "Reset"]

Apply = Callable[[Event, Any], Awaitable[None]]
Reset = Callable[[Any], Awaitable[None]]
A = TypeVar("A", bound=Apply)
R = TypeVar("R", bound=Reset)


class Projection:
    """A named read model: ``on(type)`` handlers, and how to clear it for a rebuild."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigurationError(f"a projection needs a name of 1-200 characters: {name!r}")
        self.name = name
        self.handlers: dict[str, list[Apply]] = {}
        self.reset: Reset | None = None

    def on(self, *event_types: str) -> Callable[[A], A]:
        """Decorator: the function applies events of these types."""
        if not event_types:
            raise ConfigurationError("on() needs at least one event type")
        for event_type in event_types:
            if not isinstance(event_type, str) or not event_type:
                raise ConfigurationError(f"an event type is a non-empty str: {event_type!r}")

        def add(apply: A) -> A:
            for event_type in event_types:
                self.handlers.setdefault(event_type, []).append(apply)
            return apply

        return add

    def resets(self, reset: R) -> R:
        """Decorator: the function empties the read model before a rebuild."""
        self.reset = reset
        return reset

    async def apply(self, event: Event, sql: Any) -> bool:
        """Apply ``event`` if this projection takes its type; whether it did."""
        handlers = self.handlers.get(event.type)
        if not handlers:
            return False
        for handler in handlers:
            await handler(event, sql)
        return True

    def __repr__(self) -> str:
        return f"<Projection {self.name} {sorted(self.handlers)}>"
