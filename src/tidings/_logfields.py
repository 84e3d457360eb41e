"""The fields of a log record about one delivery, for people and for JSON formatters.

Records about an event carry them as ``record.tidings`` (a dict), so that
:class:`tidings.logs.JsonFormatter`, or any formatter reading ``extra``, can
emit them without parsing the message.
"""

from __future__ import annotations

from tidings.broker import Delivery
from tidings.event import Event

__all__ = ["EXTRA", "delivery_fields", "described", "trace_id"]

#: The LogRecord attribute holding the fields.
EXTRA = "tidings"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    return parts[1]


def delivery_fields(
    subscription: str, delivery: Delivery, event: Event | None
) -> dict[str, object]:
    """Who and where: the event (when it could be decoded), its topic, group and attempt."""
    return {
        "event_id": None if event is None else event.id,
        "type": None if event is None else event.type,
        "topic": delivery.topic,
        "partition": delivery.partition,
        "position": delivery.position,
        "group": delivery.group,
        "subscription": subscription,
        "correlation_id": None if event is None else event.correlationid,
        "trace_id": None if event is None else trace_id(event.traceparent),
        "attempt": delivery.attempt,
    }


def described(fields: dict[str, object]) -> str:
    """``event <id> (<type>) on <topic>``, or the broker position of an undecodable message."""
    where = f"on {fields['topic']}"
    if fields["event_id"] is None:
        return f"message {fields['position']} {where}"
    ids = f"event {fields['event_id']} ({fields['type']}) {where}"
    if fields["correlation_id"] is not None:
        ids += f", correlation {fields['correlation_id']}"
    if fields["trace_id"] is not None:
        ids += f", trace {fields['trace_id']}"
    return ids
