"""Typed keyword options of the public API (so a misspelt option is a type error).

``EventAttributes`` are the CloudEvents attributes a caller may set on an
event it builds or publishes; ``SubscriptionOptions`` are the options of
:meth:`tidings.App.subscribe`, as documented on
:meth:`tidings.App.add_subscription`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from tidings.filters import FilterSpec
    from tidings.middleware import HandlerMiddleware
    from tidings.retry import RetryPolicy

__all__ = ["EventAttributes", "SubscriptionOptions"]


class EventAttributes(TypedDict, total=False):
    """CloudEvents attributes (and tidings extensions) settable on an event."""

    id: str
    source: str
    time: datetime | None
    subject: str | None
    datacontenttype: str | None
    dataschema: str | None
    traceparent: str | None
    tracestate: str | None
    correlationid: str | None
    causationid: str | None
    partitionkey: str | None
    sequence: str | None
    schemaversion: int | None
    extensions: Mapping[str, Any]


class SubscriptionOptions(TypedDict, total=False):
    """The options of :meth:`tidings.App.add_subscription`."""

    group: str | None
    filter: FilterSpec | None
    delivery: Literal["at_most_once", "at_least_once", "exactly_once"]
    retry: RetryPolicy | None
    concurrency: int
    prefetch: int | None
    ordering: Literal["key", "none"]
    start: Literal["earliest", "latest"]
    batch_size: int
    batch_timeout: float
    ack_wait: float
    middleware: Sequence[HandlerMiddleware]
    name: str | None
    replies: bool
