"""Saying that an event undoes the effect of another: the ``compensates`` extension.

A saga that rolls a step back emits a compensating event carrying, in the
CloudEvents extension ``compensates``, the id of the event whose effect it
undoes. ``tidings trace`` then shows that event's handling as compensated::

    ctx.emit(ReleaseInventory(order_id=...), extensions=compensating(order_event_id))

It is an ordinary extension: it travels with the event through every broker
and codec, and a consumer that does not know it ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping

from tidings.event import Event

__all__ = ["COMPENSATES", "compensated_id", "compensating"]

#: The CloudEvents extension naming the event whose effect this one undoes.
COMPENSATES = "compensates"


def compensating(event_id: str) -> Mapping[str, str]:
    """The ``extensions`` of an event that undoes the effect of event ``event_id``."""
    return {COMPENSATES: event_id}


def compensated_id(event: Event) -> str | None:
    """The id of the event ``event`` undoes, if it is a compensation."""
    value = event.extensions.get(COMPENSATES) if event.extensions else None
    return value if isinstance(value, str) and value else None
