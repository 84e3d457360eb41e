"""What a handler may know about the delivery it is handling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from tidings._replies import REPLYTO
from tidings.event import Event
from tidings.options import EventAttributes
from tidings.routing import validate_topic

if TYPE_CHECKING:
    from tidings.broker import Delivery
    from tidings.publisher import Emitted

__all__ = ["Context"]


class Context:
    """Per-delivery context handed to handlers that ask for it by type hint.

    ``attempt`` counts from 1. Follow-up events added with :meth:`emit` are
    published after the handler returns, together with any it returns, and
    before the delivery is acked (atomically under ``exactly_once``).
    """

    __slots__ = (
        "_events",
        "_outputs",
        "_reply",
        "app_name",
        "delivery",
        "event",
        "routes",
        "subscription",
        "transaction",
    )

    def __init__(
        self,
        app_name: str,
        subscription: str,
        delivery: Delivery,
        event: Event,
        events: list[Event] | None = None,
    ) -> None:
        self.app_name = app_name
        self.subscription = subscription
        self.delivery = delivery
        self.event = event
        self._events = events
        self._outputs: list[Emitted] = []
        #: The reply to a request, as queued by :meth:`reply` (payload, attributes).
        self._reply: Emitted | None = None
        #: Follow-up event id -> topic, for follow-ups emitted with ``topic=``.
        self.routes: dict[str, str] = {}
        #: The database transaction an inbox opened for this handling (its type is the
        #: inbox's driver: an asyncpg connection, a SQLAlchemy AsyncSession...); else None.
        self.transaction: Any = None

    @property
    def events(self) -> list[Event]:
        """The events of this handling: the batch, or just :attr:`event`."""
        if self._events is None:
            self._events = [self.event]
        return self._events

    @property
    def attempt(self) -> int:
        return self.delivery.attempt

    @property
    def topic(self) -> str:
        return self.delivery.topic

    @property
    def partition(self) -> int:
        return self.delivery.partition

    @property
    def offset(self) -> int:
        return self.delivery.offset

    @property
    def position(self) -> str:
        """Where the broker keeps the event (opaque text)."""
        return self.delivery.position

    @property
    def group(self) -> str:
        return self.delivery.group

    def emit(
        self,
        payload: Any,
        *,
        topic: str | None = None,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> None:
        """Queue a follow-up event (a payload object or an ``Event``) caused by this one.

        ``topic`` overrides the routing table; ``type`` and ``attributes`` are
        CloudEvents attributes (``subject``, ``partitionkey``...) for the event.
        """
        values: dict[str, Any] = dict(attributes)
        if type is not None:
            values["type"] = type
        if topic is not None:
            validate_topic(topic)
        self._outputs.append((payload, topic, values))

    @property
    def replyto(self) -> str | None:
        """Where the reply to this event goes, if it is a request (``replyto`` extension)."""
        value = self.event.extensions.get(REPLYTO) if self.event.extensions else None
        return value if isinstance(value, str) else None

    def reply(
        self,
        payload: Any,
        *,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> bool:
        """Answer the request being handled with ``payload`` (sent once the handler returns).

        Takes the place of the handler's return value as the reply, which is
        then published as a follow-up. Does nothing (and returns False) when
        the event is not a request, so one handler serves events and requests.
        """
        if self.replyto is None:
            return False
        values: dict[str, Any] = dict(attributes)
        if type is not None:
            values["type"] = type
        self._reply = (payload, None, values)
        return True

    def __repr__(self) -> str:
        return (
            f"<Context {self.subscription} {self.topic}[{self.partition}]@{self.offset} "
            f"attempt={self.attempt}>"
        )
