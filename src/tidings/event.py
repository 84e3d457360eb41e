"""The immutable CloudEvents 1.0 envelope."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar

import msgspec

from tidings._uuid7 import random_bits, uuid7
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
#: An RFC 2046 media type: ``type/subtype``, each an RFC 2045 token, then any parameters.
_MEDIA_TYPE = re.compile(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*(?:;.*)?\Z", re.S
)
#: Media types already checked (bounded): most events repeat a few.
_KNOWN_MEDIA_TYPES = {"application/json", "application/cloudevents+json", "text/plain"}
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_EXTENSION_TYPES = (str, int, bool)
# CloudEvents "Integer": a signed 32-bit whole number.
_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
#: Optional attributes the spec requires to be non-empty strings when present.
_NON_EMPTY_STRINGS = ("subject", "datacontenttype", "dataschema")
_STRING_EXTENSIONS = ("tracestate", "correlationid", "causationid", "partitionkey", "sequence")
_MINUTE = timedelta(minutes=1)


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
        # One cheap test per group of attributes; the precise checks (and their
        # messages) run only when a group is unusual: set, or not exactly str.
        if not (
            self.specversion == "1.0"
            and self.id.__class__ is str
            and self.id
            and self.source.__class__ is str
            and self.source
            and self.type.__class__ is str
            and self.type
        ):
            self._check_required()
        subject, content_type, schema = self.subject, self.datacontenttype, self.dataschema
        if not (
            (subject is None or (subject.__class__ is str and subject))
            and (content_type is None or (content_type.__class__ is str and content_type))
            and (schema is None or (schema.__class__ is str and schema))
        ):
            self._check_optional_strings()
        if content_type is not None and content_type not in _KNOWN_MEDIA_TYPES:
            _check_media_type(content_type)
        key, correlation, causation = self.partitionkey, self.correlationid, self.causationid
        if not (
            (key is None or key.__class__ is str)
            and (correlation is None or correlation.__class__ is str)
            and (causation is None or causation.__class__ is str)
            and self.tracestate is None
            and self.sequence is None
        ):
            self._check_string_extensions()
        version = self.schemaversion
        if version is not None and not _is_integer(version):
            raise InvalidEventError(
                f"attribute 'schemaversion' must be a 32-bit integer or None, got {version!r}"
            )
        time = self.time
        if time is not None and (time.__class__ is not datetime or time.tzinfo is not UTC):
            offset = time.utcoffset() if isinstance(time, datetime) else None
            if offset is None:
                raise InvalidEventError("attribute 'time' must be a timezone-aware datetime")
            if offset % _MINUTE:
                # RFC 3339 offsets have no seconds: keep the instant, express it in UTC.
                msgspec.structs.force_setattr(self, "time", time.astimezone(UTC))
        if self.traceparent is not None and not _is_traceparent(self.traceparent):
            raise InvalidEventError(f"traceparent {self.traceparent!r} is not W3C trace context")
        extensions = self.extensions
        if extensions is not _EMPTY:
            if not isinstance(extensions, Mapping):
                raise InvalidEventError(
                    f"extensions must be a mapping of name -> value, got {_kind(extensions)}"
                )
            _check_extensions(extensions)
            # Always a private read-only copy: the caller's dict may change later.
            frozen = MappingProxyType(dict(extensions)) if extensions else _EMPTY
            msgspec.structs.force_setattr(self, "extensions", frozen)

    def _check_required(self) -> None:
        if self.specversion != "1.0":
            raise InvalidEventError(f"specversion must be '1.0', got {self.specversion!r}")
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidEventError(f"attribute {name!r} must be a non-empty string")

    def _check_optional_strings(self) -> None:
        for name in _NON_EMPTY_STRINGS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidEventError(f"attribute {name!r} must be a non-empty string or None")

    def _check_string_extensions(self) -> None:
        for name in _STRING_EXTENSIONS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidEventError(f"attribute {name!r} must be a string or None")

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
        if name in _ATTRIBUTE_SET:
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
        type: str | None = None,
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
        values: dict[str, Any] = {
            "correlationid": self.correlationid or self.id,
            "causationid": self.id,
            "traceparent": child_traceparent(self.traceparent),
            "tracestate": self.tracestate,
        }
        values.update(attributes)  # explicit attributes win over the carried ones
        return Event(
            type=type,
            source=source if source is not None else self.source,
            data=data,
            schemaversion=schemaversion,
            **values,
        )


_FIELD_NAMES = frozenset(Event.__struct_fields__)
_ATTRIBUTE_FIELDS = tuple(f for f in Event.__struct_fields__ if f not in ("data", "extensions"))
_ATTRIBUTE_SET = frozenset(_ATTRIBUTE_FIELDS)
Event.attribute_names = _ATTRIBUTE_FIELDS


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX


def _is_traceparent(value: Any) -> bool:
    # W3C trace context: version ff is invalid, and so are all-zero trace or span ids.
    return (
        isinstance(value, str)
        and _TRACEPARENT.match(value) is not None
        and not value.startswith("ff")
        and value[3:35] != "0" * 32
        and value[36:52] != "0" * 16
    )


def _check_media_type(content_type: str) -> None:
    if not _MEDIA_TYPE.match(content_type):
        raise InvalidEventError(
            f"datacontenttype {content_type!r} is not an RFC 2046 media type "
            "(type/subtype, such as application/json)"
        )
    if len(_KNOWN_MEDIA_TYPES) < 256:
        _KNOWN_MEDIA_TYPES.add(content_type)


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
                f"extension {name!r} must be a string, integer or boolean, got {_kind(value)}"
            )
        if isinstance(value, int) and not isinstance(value, bool) and not _is_integer(value):
            raise InvalidEventError(
                f"extension {name!r} is out of the CloudEvents integer range "
                f"({_INT_MIN}..{_INT_MAX}): {value}; send it as a string"
            )


def new_traceparent() -> str:
    """A fresh sampled W3C traceparent (new trace id and span id)."""
    return f"00-{random_bits(128):032x}-{random_bits(64):016x}-01"


def child_traceparent(parent: str | None) -> str | None:
    """The traceparent of a child span: same trace and flags, new span id."""
    if parent is None:
        return None
    return f"{parent[:36]}{random_bits(64):016x}{parent[52:]}"
