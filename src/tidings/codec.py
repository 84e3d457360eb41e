"""Event <-> bytes: CloudEvents JSON structured mode and binary mode.

Structured mode puts the whole event in the message body
(``application/cloudevents+json``). Binary mode puts the context attributes in
transport headers (``ce_`` for Kafka-style transports, ``ce-`` for HTTP-style
ones) and only the data in the body. Decoding accepts both: a message whose
headers carry ``<prefix>specversion`` is binary, anything else is structured.
Values of ``ce-`` headers are percent-encoded, as the HTTP and NATS bindings
require. In binary mode, data is JSON when the content type is JSON (or
absent), text for ``text/*`` or a ``charset``, and bytes otherwise.

Strict: malformed input raises :class:`~tidings.errors.DecodeError` naming what
is wrong, and nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

import msgspec

from tidings.errors import ConfigurationError, DecodeError, InvalidEventError
from tidings.event import KNOWN_EXTENSIONS, STANDARD_ATTRIBUTES, Event
from tidings.payload import json_hook

__all__ = ["STRUCTURED_CONTENT_TYPE", "Codec", "is_json_content_type"]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema")
_KNOWN_STRING_EXTENSIONS = tuple(n for n in KNOWN_EXTENSIONS if n != "schemaversion")
_STRING_ATTRIBUTES = frozenset(_OPTIONAL_STRINGS + _KNOWN_STRING_EXTENSIONS)
_REQUIRED = frozenset(("id", "source", "specversion", "type"))
#: Binary-mode attributes that go to the Event as they are (all strings in headers).
_BINARY_FAST = _REQUIRED | {"time"} | _STRING_ATTRIBUTES
#: The HTTP binding (and the NATS one) percent-encode ``ce-`` header values.
_PERCENT_PREFIX = "ce-"
# HTTP binding 3.1.3.2: printable ASCII except space, '"' and '%' stays as is.
_HEADER_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"%')
#: A value made only of those characters (most are): sent as is, without ``quote``.
_NEEDS_NO_QUOTING = re.compile(f"[{re.escape(_HEADER_SAFE)}]*").fullmatch
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<zulu>[Zz])|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))?"
)
_INTEGER = re.compile(r"-?[0-9]{1,10}")
#: The shape tidings itself writes (upper-case T and Z, at most 6 fraction digits),
#: for which datetime.fromisoformat agrees with the full RFC 3339 parser.
_COMMON_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
)


_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """The common structured event, type-checked by msgspec in one pass.

    Everything else (extensions, ``data_base64``, valid but unusual values such
    as a string ``schemaversion``, and every invalid event) fails here and takes
    the general path, :meth:`Codec._from_attributes`, which says what is wrong.
    """

    id: _NonEmpty
    source: _NonEmpty
    specversion: Literal["1.0"]
    type: _NonEmpty
    time: str | None = None
    subject: _NonEmpty | None = None
    datacontenttype: _NonEmpty | None = None
    dataschema: _NonEmpty | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    partitionkey: str | None = None
    sequence: str | None = None
    schemaversion: Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)] | None = None
    data: Any = None


def is_json_content_type(content_type: str | None) -> bool:
    """True for an absent content type, ``application/json`` and ``*/*+json``."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def _text_charset(content_type: str | None) -> str | None:
    """The charset to read data of this content type as text, or None for bytes.

    ``text/*`` types are text (UTF-8 unless a charset says otherwise), and so is
    any type that names a charset.
    """
    if content_type is None:
        return None
    media, _, parameters = content_type.partition(";")
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or "utf-8"
    return "utf-8" if media.strip().lower().startswith("text/") else None


class Codec:
    """Encodes events to bytes (plus headers) and back.

    ``mode`` selects what :meth:`encode` produces; :meth:`decode` reads both.
    """

    def __init__(
        self,
        mode: Literal["structured", "binary"] = "structured",
        *,
        header_prefix: str = "ce_",
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ConfigurationError(f"codec mode must be 'structured' or 'binary', got {mode!r}")
        if not isinstance(header_prefix, str) or not header_prefix:
            raise ConfigurationError(
                "codec header_prefix must be a non-empty string such as 'ce_', "
                f"got {header_prefix!r}"
            )
        self.mode = mode
        self.header_prefix = header_prefix
        self._own_prefix = own = header_prefix.lower()
        self._own_percent = own == _PERCENT_PREFIX
        #: Header name -> attribute, for the attributes the fast path takes as they are.
        self._own_names = {own + name: name for name in _BINARY_FAST}
        self._own_names["content-type"] = "datacontenttype"
        #: (attribute, header name) in the order of Event.attributes().
        self._headers = tuple(
            (name, "content-type" if name == "datacontenttype" else header_prefix + name)
            for name in Event.attribute_names
        )
        self._encoder = msgspec.json.Encoder(enc_hook=json_hook)
        self._decoder = msgspec.json.Decoder()
        self._envelope_decoder = msgspec.json.Decoder(_Envelope)

    # -- encoding ------------------------------------------------------------

    def encode(self, event: Event) -> tuple[bytes, dict[str, str]]:
        """Return ``(body, headers)`` for ``event`` in this codec's mode."""
        if self.mode == "binary":
            return self._encode_binary(event)
        return self.encode_structured(event), {}

    def encode_structured(self, event: Event) -> bytes:
        """The event as one CloudEvents JSON object."""
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": event.id,
            "source": event.source,
            "type": event.type,
        }
        if event.time is not None:
            out["time"] = event.time
        # Attribute by attribute, not a getattr loop: this runs for every event.
        if event.subject is not None:
            out["subject"] = event.subject
        if event.datacontenttype is not None:
            out["datacontenttype"] = event.datacontenttype
        if event.dataschema is not None:
            out["dataschema"] = event.dataschema
        if event.traceparent is not None:
            out["traceparent"] = event.traceparent
        if event.tracestate is not None:
            out["tracestate"] = event.tracestate
        if event.correlationid is not None:
            out["correlationid"] = event.correlationid
        if event.causationid is not None:
            out["causationid"] = event.causationid
        if event.partitionkey is not None:
            out["partitionkey"] = event.partitionkey
        if event.sequence is not None:
            out["sequence"] = event.sequence
        if event.schemaversion is not None:
            out["schemaversion"] = event.schemaversion
        if event.extensions:
            out.update(event.extensions)
        data = event.data
        if data is not None:
            if isinstance(data, bytes | bytearray | memoryview):
                out["data_base64"] = base64.b64encode(data).decode("ascii")
            else:
                out["data"] = data
        return self._encode_json(out)

    def _encode_json(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value)
        except (TypeError, ValueError, NotImplementedError, OverflowError) as exc:
            # ValueError covers UnicodeEncodeError (lone surrogates) and pydantic's
            # serialization errors.
            raise InvalidEventError(f"event cannot be encoded as JSON: {exc}") from exc

    def _encode_binary(self, event: Event) -> tuple[bytes, dict[str, str]]:
        headers: dict[str, str] = {}
        # Event.attributes() field by field, without building that dict.
        for name, header in self._headers:
            value = getattr(event, name)
            if value is not None:
                headers[header] = value if value.__class__ is str else _attribute_text(value)
        if event.extensions:
            prefix = self.header_prefix
            for name, value in event.extensions.items():
                headers[prefix + name] = value if value.__class__ is str else _attribute_text(value)
        # One check for all values (most need no quoting), then each if one does.
        if self._own_percent and _NEEDS_NO_QUOTING("".join(headers.values())) is None:
            for name, text in headers.items():
                if name != "content-type" and _NEEDS_NO_QUOTING(text) is None:
                    headers[name] = quote(text, safe=_HEADER_SAFE)
        data = event.data
        content_type = event.datacontenttype
        if data is None:
            body = b""
        elif isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            # Without a content type the reader would take the body for JSON.
            headers.setdefault("content-type", "application/octet-stream")
        elif isinstance(data, str) and not is_json_content_type(content_type):
            charset = _text_charset(content_type) or "utf-8"
            try:
                body = data.encode(charset)
            except (LookupError, UnicodeError) as exc:
                raise InvalidEventError(
                    f"event data cannot be encoded as {content_type!r}: {exc}"
                ) from exc
        else:
            body = self._encode_json(data)
            headers.setdefault("content-type", "application/json")
        return body, headers

    # -- decoding ------------------------------------------------------------

    def decode(self, body: bytes, headers: Mapping[str, str | bytes] | None = None) -> Event:
        """Decode a message body (and headers) into an :class:`Event`.

        Header names match case-insensitively; header values may be bytes
        (UTF-8). Raises DecodeError for anything that is not a valid CloudEvent.
        """
        if headers:
            own = self._own_prefix
            if own + "specversion" in headers:  # the common case: written by tidings
                return self._decode_own(body, headers)
            # Header names are case-insensitive in HTTP; CloudEvents names are lower case.
            lowered = {k.lower(): v for k, v in headers.items() if isinstance(k, str)}
            for prefix in (own, "ce_", "ce-"):
                if prefix + "specversion" in lowered:
                    return self._decode_binary(body, lowered, prefix)
        return self.decode_structured(body)

    def decode_structured(self, body: bytes) -> Event:
        try:
            env = self._envelope_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # not the common shape: the general path below
        else:
            try:
                return Event(
                    type=env.type,
                    source=env.source,
                    data=env.data,
                    id=env.id,
                    time=None if env.time is None else _parse_time(env.time),
                    subject=env.subject,
                    datacontenttype=env.datacontenttype,
                    dataschema=env.dataschema,
                    traceparent=env.traceparent,
                    tracestate=env.tracestate,
                    correlationid=env.correlationid,
                    causationid=env.causationid,
                    partitionkey=env.partitionkey,
                    sequence=env.sequence,
                    schemaversion=env.schemaversion,
                )
            except InvalidEventError as exc:
                raise DecodeError(str(exc)) from exc
        try:
            obj = self._decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"event body is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DecodeError(f"a structured CloudEvent is a JSON object, got {_kind(obj)}")
        return self._from_attributes(obj)

    def decode_batch(self, body: bytes) -> list[Event]:
        """Decode a JSON batch (``application/cloudevents-batch+json``): an array of events.

        Raises DecodeError, naming the position of the first invalid event.
        """
        try:
            items = self._decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"batch body is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise DecodeError(f"a CloudEvents batch is a JSON array, got {_kind(items)}")
        events = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise DecodeError(f"batch item {position} is {_kind(item)}, not a JSON object")
            try:
                events.append(self._from_attributes(item))
            except DecodeError as exc:
                raise DecodeError(f"batch item {position}: {exc}") from exc
        return events

    def _from_attributes(self, obj: dict[str, Any], data: Any = None) -> Event:
        attrs: dict[str, Any] = {}
        for name in ("id", "source", "specversion", "type"):
            value = obj.pop(name, None)
            if value is None:
                raise DecodeError(f"required attribute {name!r} is missing")
            if not isinstance(value, str) or not value:
                raise DecodeError(
                    f"required attribute {name!r} must be a non-empty string, got {_short(value)}"
                )
            attrs[name] = value
        if attrs["specversion"] != "1.0":
            raise DecodeError(f"unsupported specversion {attrs['specversion']!r}; expected '1.0'")
        time = obj.pop("time", None)
        attrs["time"] = None if time is None else _parse_time(time)
        for name in _STRING_ATTRIBUTES.intersection(obj):
            value = obj.pop(name)
            if value is not None:
                if not isinstance(value, str):
                    raise DecodeError(f"attribute {name!r} must be a string, got {_kind(value)}")
                attrs[name] = value
        version = obj.pop("schemaversion", None)
        if version is not None:
            attrs["schemaversion"] = _parse_int("schemaversion", version)
        if "data" in obj and "data_base64" in obj:
            raise DecodeError("an event must not carry both 'data' and 'data_base64'")
        if "data_base64" in obj:
            encoded = obj.pop("data_base64")
            if not isinstance(encoded, str):
                raise DecodeError("'data_base64' must be a base64 string")
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DecodeError(f"'data_base64' is not valid base64: {exc}") from exc
        elif "data" in obj:
            data = obj.pop("data")
        if obj:
            for name, value in obj.items():
                if value is None or isinstance(value, dict | list | float):
                    raise DecodeError(
                        f"extension {name!r} has unsupported value type {_kind(value)}"
                    )
            attrs["extensions"] = obj
        try:
            return Event(data=data, **attrs)
        except InvalidEventError as exc:
            raise DecodeError(str(exc)) from exc
        except TypeError as exc:  # pragma: no cover - defensive: unexpected attribute
            raise DecodeError(f"invalid event attributes: {exc}") from exc

    def _decode_own(self, body: bytes, headers: Mapping[str, Any]) -> Event:
        """Binary mode as tidings writes it: known attributes only, text values.

        Anything else (bytes, upper case, percent-escapes, unknown extensions)
        takes the general path, which checks and reports every detail.
        """
        names = self._own_names
        percent = self._own_percent
        attrs: dict[str, Any] = {}
        extensions: dict[str, str] | None = None
        for header, value in headers.items():
            name = names.get(header)
            if value.__class__ is bytes and value.isascii():
                value = value.decode("ascii")
            if value.__class__ is not str or (percent and "%" in value):
                return self._decode_binary(body, headers, self._own_prefix)
            if name is None:
                # An extension (replyto...): a plain lower-case name, as tidings writes it.
                name = _own_extension(header, self._own_prefix)
                if name is None:
                    return self._decode_binary(body, headers, self._own_prefix)
                if extensions is None:
                    extensions = {}
                extensions[name] = value
                continue
            attrs[name] = value
        if attrs.get("specversion") != "1.0" or not _REQUIRED.issubset(attrs):
            return self._decode_binary(body, headers, self._own_prefix)
        if extensions is not None:
            attrs["extensions"] = extensions
        content_type = attrs.get("datacontenttype")
        if content_type == "application/json" and body:
            try:
                data = self._decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise DecodeError(f"event data is not valid JSON: {exc}") from exc
        else:
            data = self._binary_data(body, content_type)
        return _text_event(attrs, data)

    def _binary_data(self, body: bytes, content_type: str | None) -> Any:
        """The data of a binary-mode message, by its content type."""
        if not body:
            return None
        if is_json_content_type(content_type):
            try:
                return self._decoder.decode(body)
            except msgspec.DecodeError as exc:
                if content_type is not None:
                    raise DecodeError(f"event data is not valid JSON: {exc}") from exc
                # No declared type (as the CloudEvents SDKs send bytes): keep the bytes.
                return bytes(body)
        if (charset := _text_charset(content_type)) is not None:
            try:
                return bytes(body).decode(charset)
            except (LookupError, UnicodeError) as exc:
                raise DecodeError(f"event data is not text in {content_type!r}: {exc}") from exc
        return bytes(body)

    def _decode_binary(self, body: bytes, headers: Mapping[str, Any], prefix: str) -> Event:
        """``prefix`` is lower case; header names are compared in lower case."""
        percent = prefix == _PERCENT_PREFIX
        start = len(prefix)
        obj: dict[str, Any] = {}
        content_types: dict[str, Any] = {}
        for original, value in headers.items():
            header = original.lower()  # header names are case-insensitive
            if header.startswith(prefix):
                name = header[start:]
                if name == "data" or name == "data_base64":
                    raise DecodeError(f"header {header!r} is not a context attribute")
                kind = value.__class__
                if kind is str:
                    text = value
                elif kind is bytes and value.isascii():  # Kafka and NATS give bytes
                    text = value.decode("ascii")
                else:
                    text = _header_text(header, value)
                obj[name] = _percent_decode(header, text) if percent and "%" in text else text
            elif header == "content-type" or header == "content_type":
                content_types[header] = value
        for header in ("content-type", "content_type"):
            if header in content_types:
                obj["datacontenttype"] = _header_text(header, content_types[header])
                break
        data = self._binary_data(body, obj.get("datacontenttype"))
        if _REQUIRED.issubset(obj) and _BINARY_FAST.issuperset(obj):
            # The common shape (every value a string, no unknown extension): straight
            # to the Event, whose own checks cover what _from_attributes would.
            return _text_event(obj, data)
        return self._from_attributes(obj, data)


_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}").fullmatch
#: Names that are not extensions, whatever their header looks like.
_NOT_EXTENSIONS = STANDARD_ATTRIBUTES | frozenset(Event.__struct_fields__)


def _own_extension(header: str, prefix: str) -> str | None:
    """The extension a header names, if it is one the fast path can take as it is."""
    if not header.startswith(prefix):
        return None
    name = header[len(prefix) :]
    if _EXTENSION_NAME(name) is None or name in _NOT_EXTENSIONS:
        return None
    return name


def _text_event(attrs: dict[str, Any], data: Any) -> Event:
    """An Event from attributes that are all known names with text values."""
    time = attrs.pop("time", None)
    try:
        return Event(data=data, time=None if time is None else _parse_time(time), **attrs)
    except InvalidEventError as exc:
        raise DecodeError(str(exc)) from exc


def _attribute_text(value: Any) -> str:
    """A binary-mode header value of an attribute that is not a plain ``str``."""
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _header_text(header: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {header!r} is not valid UTF-8: {exc}") from exc
    raise DecodeError(f"header {header!r} must be a string, got {_kind(value)}")


def _percent_decode(header: str, value: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        shown = _short(value)
        raise DecodeError(f"header {header!r} is not percent-encoded UTF-8: {shown}") from exc


def _format_time(value: datetime) -> str:
    if value.__class__ is datetime and value.tzinfo is UTC:  # what Event() makes
        # What isoformat() gives with Z for +00:00, in half the time.
        if value.microsecond:
            return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - faster
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031 - faster
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
        )
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_time(value: Any) -> datetime:
    if value.__class__ is str and _COMMON_TIME.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # e.g. month 13: the full parser below says what is wrong
    if not isinstance(value, str):
        raise DecodeError(f"attribute 'time' must be an RFC 3339 string, got {_kind(value)}")
    match = _RFC3339.fullmatch(value)
    shown = _short(value)
    if match is None:
        raise DecodeError(
            f"attribute 'time' is not an RFC 3339 date-time (like 2024-05-01T12:00:00Z): {shown}"
        )
    if not match["zulu"] and not match["sign"]:
        raise DecodeError(f"attribute 'time' has no UTC offset (add 'Z' or +hh:mm): {shown}")
    year, month, day = (int(part) for part in match["date"].split("-"))
    # Python keeps microseconds: finer digits (nanoseconds from other SDKs) are cut.
    microsecond = int((match["fraction"] or "0")[:6].ljust(6, "0"))
    try:
        if match["zulu"]:
            tz = UTC
        else:
            offset = timedelta(
                hours=int(match["offset_hours"]), minutes=int(match["offset_minutes"])
            )
            tz = timezone(-offset if match["sign"] == "-" else offset)
        return datetime(
            year,
            month,
            day,
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            microsecond,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise DecodeError(f"attribute 'time' is not a valid date-time: {shown} ({exc})") from exc


def _parse_int(name: str, value: Any) -> int:
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    raise DecodeError(f"attribute {name!r} must be a 32-bit integer, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
