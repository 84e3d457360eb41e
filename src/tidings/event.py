"""The immutable CloudEvents 1.0 envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

import msgspec

from tidings._uuid7 import uuid7
from tidings.errors import InvalidEventError

__all__ = ["KNOWN_EXTENSIONS", "REQUIRED_ATTRIBUTES", "STANDARD_ATTRIBUTES", "Event"]

REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
STANDARD_ATTRIBUTES = frozenset(
    {
        "id",
        "source",
        "specversion",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "data",
        "data_base64",
    }
)
#: Extensions tidings knows by name; they are plain attributes of ``Event``.
KNOWN_EXTENSIONS = (
    "traceparent",
    "tracestate",
    "correlationid",
    "causationid",
    "partitionkey",
    "sequence",
    "schemaversion",
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}\Z")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_EXTENSION_TYPES = (str, int, bool)


def _now() -> datetime:
    return datetime.now(UTC)


def _no_extensions() -> Mapping[str, Any]:
    return _EMPTY


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable CloudEvents 1.0 event.

    ``id`` defaults to a new UUIDv7 and ``time`` to now (UTC). The event is
    identified by ``(source, id)``. Assigning an attribute raises
    ``AttributeError``; build a changed copy with :meth:`replace` or a
    follow-up with :meth:`derive`.

    >>> Event(type="OrderPlaced", source="/shop", data={"order_id": "ORD-1"}).specversion
    '1.0'
    """

    type: str
    source: str
    data: Any = None
    id: str = msgspec.field(default_factory=uuid7)
    time: datetime | None = msgspec.field(default_factory=_now)
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    specversion: str = "1.0"
    traceparent: str | None = None
    tracestate: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    partitionkey: str | None = None
    sequence: str | None = None
    schemaversion: int | None = None
    extensions: Mapping[str, Any] = msgspec.field(default_factory=_no_extensions)

    attribute_names: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        if self.specversion != "1.0":
            raise InvalidEventError(f"specversion must be '1.0', got {self.specversion!r}")
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidEventError(f"attribute {name!r} must be a non-empty string")
        time = self.time
        if time is not None and (not isinstance(time, datetime) or time.utcoffset() is None):
            raise InvalidEventError("attribute 'time' must be a timezone-aware datetime")
        if self.traceparent is not None and not _TRACEPARENT.match(self.traceparent):
            raise InvalidEventError(f"traceparent {self.traceparent!r} is not W3C trace context")
        if self.extensions:
            _check_extensions(self.extensions)
            msgspec.structs.force_setattr(
                self, "extensions", MappingProxyType(dict(self.extensions))
            )

    # -- reading -----------------------------------------------------------

    @property
    def key(self) -> str | None:
        """The partition key: ``partitionkey``, else ``subject``, else None."""
        return self.partitionkey if self.partitionkey is not None else self.subject

    @property
    def identity(self) -> tuple[str, str]:
        """``(source, id)``: what deduplication compares."""
        return (self.source, self.id)

    def get(self, name: str, default: Any = None) -> Any:
        """Any context attribute (standard or extension) by its CloudEvents name."""
        if name in _FIELD_NAMES:
            value = getattr(self, name)
            return default if value is None else value
        return self.extensions.get(name, default)

    def attributes(self) -> dict[str, Any]:
        """All context attributes that are set (everything except ``data``)."""
        out: dict[str, Any] = {}
        for name in _ATTRIBUTE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        return out

    # -- building new events -----------------------------------------------

    def replace(self, **changes: Any) -> Event:
        """A copy with some attributes changed (validated like a new event)."""
        values = {name: getattr(self, name) for name in _FIELD_NAMES}
        values.update(changes)
        return Event(**values)

    def derive(
        self,
        data: Any = None,
        *,
        type: str | None = None,  # noqa: A002 - the CloudEvents attribute name
        source: str | None = None,
        **attributes: Any,
    ) -> Event:
        """Build a follow-up event caused by this one.

        The new event carries ``correlationid`` (this event's, or this event's
        id when it is the root), ``causationid`` (this event's id) and a
        ``traceparent`` in the same trace. ``type`` defaults to the payload
        type's name.
        """
        from tidings.payload import payload_info

        schemaversion = attributes.pop("schemaversion", None)
        if type is None:
            info = payload_info(data)
            type = info.name
            schemaversion = info.version if schemaversion is None else schemaversion
        return Event(
            type=type,
            source=source if source is not None else self.source,
            data=data,
            correlationid=self.correlationid or self.id,
            causationid=self.id,
            traceparent=child_traceparent(self.traceparent),
            tracestate=self.tracestate,
            schemaversion=schemaversion,
            **attributes,
        )


_FIELD_NAMES = frozenset(Event.__struct_fields__)
_ATTRIBUTE_FIELDS = tuple(f for f in Event.__struct_fields__ if f not in ("data", "extensions"))
Event.attribute_names = _ATTRIBUTE_FIELDS


def _check_extensions(extensions: Mapping[str, Any]) -> None:
    for name, value in extensions.items():
        if not isinstance(name, str) or not _EXTENSION_NAME.match(name):
            raise InvalidEventError(
                f"extension name {name!r} is invalid: CloudEvents allows 1-20 "
                "lower-case letters or digits"
            )
        if name in STANDARD_ATTRIBUTES or name in _FIELD_NAMES:
            raise InvalidEventError(
                f"extension {name!r} clashes with a standard or known attribute; set it directly"
            )
        if not isinstance(value, _EXTENSION_TYPES):
            raise InvalidEventError(
                f"extension {name!r} must be a string, integer or boolean, "
                f"got {value.__class__.__name__}"
            )


def new_traceparent() -> str:
    """A fresh sampled W3C traceparent (new trace id and span id)."""
    from tidings._uuid7 import _rng

    return f"00-{_rng.getrandbits(128):032x}-{_rng.getrandbits(64):016x}-01"


def child_traceparent(parent: str | None) -> str | None:
    """The traceparent of a child span: same trace and flags, new span id."""
    if parent is None:
        return None
    from tidings._uuid7 import _rng

    return f"{parent[:36]}{_rng.getrandbits(64):016x}{parent[52:]}"
