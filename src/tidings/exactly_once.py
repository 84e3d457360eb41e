"""Exactly-once as a strategy: how a subscription makes a handling's effects happen once.

A strategy answers two questions for the consumer: was this event's handling
already committed (a redelivery after a crash), and commit this handling's
follow-ups together with its ack. :class:`BrokerTransaction` does it inside a
transactional broker (the embedded one; later Kafka's producer transactions);
an inbox in the user's own database (:class:`tidings.outbox.Inbox`) does it on
any broker by also implementing :class:`HandlerTransaction`, so that the
handler's own writes join the commit. See SEMANTICS.md, "Exactly-once, precisely".
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

from tidings.broker import Broker, Delivery, Message, Transactional
from tidings.errors import ConfigurationError
from tidings.event import Event

__all__ = ["BrokerTransaction", "ExactlyOnce", "HandlerTransaction", "for_broker"]


@runtime_checkable
class ExactlyOnce(Protocol):
    """Commits a handling's outputs and its ack atomically, once per event identity."""

    async def handled_before(self, delivery: Delivery, event: Event) -> bool:
        """True if a handling of ``event`` by ``delivery``'s group was already committed."""

    def commit(
        self, delivery: Delivery, event: Event | None, outputs: Sequence[tuple[str, Message]]
    ) -> Awaitable[bool]:
        """Store ``outputs`` and ack ``delivery`` in one step; False if ``event`` was
        handled before (then nothing is stored, and the delivery is still acked).

        ``event`` is None for a delivery that could not be decoded (a dead letter).
        """


@runtime_checkable
class HandlerTransaction(Protocol):
    """An :class:`ExactlyOnce` whose transaction is open while the handler runs.

    The consumer calls :meth:`begin` right before the handler, hands what it
    returns to the handler as ``Context.transaction``, then ends the
    transaction with ``commit`` (the handler returned) or :meth:`rollback`
    (it raised, or was cancelled). Dead letters do not go through it: they
    are published and acked as under at-least-once.
    """

    async def begin(self, delivery: Delivery, event: Event) -> Any:
        """Open the handling's transaction and claim ``event`` for ``delivery``'s group in it.

        Returns the transaction the handler gets, or None if the event was
        handled before (then nothing stays open; the delivery is acked unhandled).
        """

    async def rollback(self, delivery: Delivery) -> None:
        """End ``delivery``'s open transaction without committing; nothing if none is open."""


class BrokerTransaction:
    """Exactly-once inside a :class:`~tidings.broker.Transactional` broker."""

    def __init__(self, broker: Transactional) -> None:
        self.broker = broker

    @staticmethod
    def _identity(event: Event) -> str:
        return f"{event.source}\n{event.id}"

    async def handled_before(self, delivery: Delivery, event: Event) -> bool:
        return await self.broker.is_processed(delivery, self._identity(event))

    def commit(
        self, delivery: Delivery, event: Event | None, outputs: Sequence[tuple[str, Message]]
    ) -> Awaitable[bool]:
        # Not a coroutine of its own: the broker's commit is awaited by the caller.
        identity = None if event is None else self._identity(event)
        return self.broker.commit(delivery, outputs, identity)


def for_broker(broker: Broker) -> ExactlyOnce:
    """The broker's own transaction, or a clear refusal."""
    if broker.capabilities.exactly_once and isinstance(broker, Transactional):
        return BrokerTransaction(broker)
    raise ConfigurationError(
        f"{type(broker).__name__} cannot commit a handling atomically, so "
        "delivery='exactly_once' is refused; use 'at_least_once' with an "
        "idempotent handler (dedupe on the event id), pass App(exactly_once=...) "
        "with an inbox in your database, or use the embedded broker"
    )
