"""Event <-> bytes: CloudEvents JSON structured mode and binary mode.

Structured mode puts the whole event in the message body
(``application/cloudevents+json``). Binary mode puts the context attributes in
transport headers (``ce_`` for Kafka-style transports, ``ce-`` for HTTP-style
ones) and only the data in the body. Decoding accepts both: a message whose
headers carry ``<prefix>specversion`` is binary, anything else is structured.

Strict: malformed input raises :class:`~tidings.errors.DecodeError` naming what
is wrong, and nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from tidings.errors import ConfigurationError, DecodeError, InvalidEventError
from tidings.event import KNOWN_EXTENSIONS, Event
from tidings.payload import to_jsonable

__all__ = ["STRUCTURED_CONTENT_TYPE", "Codec", "is_json_content_type"]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema")
_KNOWN_STRING_EXTENSIONS = tuple(n for n in KNOWN_EXTENSIONS if n != "schemaversion")


def is_json_content_type(content_type: str | None) -> bool:
    """True for an absent content type, ``application/json`` and ``*/*+json``."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


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
        self.mode = mode
        self.header_prefix = header_prefix
        self._encoder = msgspec.json.Encoder(enc_hook=to_jsonable)
        self._decoder = msgspec.json.Decoder()

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
        for name in _OPTIONAL_STRINGS:
            value = getattr(event, name)
            if value is not None:
                out[name] = value
        for name in KNOWN_EXTENSIONS:
            value = getattr(event, name)
            if value is not None:
                out[name] = value
        if event.extensions:
            out.update(event.extensions)
        data = event.data
        if data is not None:
            if isinstance(data, bytes | bytearray | memoryview):
                out["data_base64"] = base64.b64encode(data).decode("ascii")
            else:
                out["data"] = data
        try:
            return self._encoder.encode(out)
        except (TypeError, NotImplementedError, OverflowError) as exc:
            raise InvalidEventError(f"event data cannot be encoded as JSON: {exc}") from exc

    def _encode_binary(self, event: Event) -> tuple[bytes, dict[str, str]]:
        prefix = self.header_prefix
        headers: dict[str, str] = {}
        for name, value in event.attributes().items():
            if name == "datacontenttype":
                headers["content-type"] = value
            else:
                headers[prefix + name] = _header_value(value)
        data = event.data
        if data is None:
            body = b""
        elif isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
        elif isinstance(data, str) and not is_json_content_type(event.datacontenttype):
            body = data.encode("utf-8")
        else:
            try:
                body = self._encoder.encode(data)
            except (TypeError, NotImplementedError, OverflowError) as exc:
                raise InvalidEventError(f"event data cannot be encoded as JSON: {exc}") from exc
            headers.setdefault("content-type", "application/json")
        return body, headers

    # -- decoding ------------------------------------------------------------

    def decode(self, body: bytes, headers: Mapping[str, str] | None = None) -> Event:
        """Decode a message body (and headers) into an :class:`Event`.

        Raises DecodeError for anything that is not a valid CloudEvent.
        """
        if headers and (self.header_prefix + "specversion") in headers:
            return self._decode_binary(body, headers)
        if headers:
            for prefix in ("ce_", "ce-"):
                if prefix + "specversion" in headers:
                    return self._decode_binary(body, headers, prefix)
        return self.decode_structured(body)

    def decode_structured(self, body: bytes) -> Event:
        try:
            obj = self._decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"event body is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DecodeError(f"a structured CloudEvent is a JSON object, got {_kind(obj)}")
        return self._from_attributes(obj)

    def _from_attributes(self, obj: dict[str, Any], data: Any = None) -> Event:
        attrs: dict[str, Any] = {}
        for name in ("id", "source", "specversion", "type"):
            value = obj.pop(name, None)
            if not isinstance(value, str) or not value:
                raise DecodeError(f"required attribute {name!r} is missing or not a string")
            attrs[name] = value
        if attrs["specversion"] != "1.0":
            raise DecodeError(f"unsupported specversion {attrs['specversion']!r}; expected '1.0'")
        time = obj.pop("time", None)
        attrs["time"] = None if time is None else _parse_time(time)
        for name in _OPTIONAL_STRINGS + _KNOWN_STRING_EXTENSIONS:
            value = obj.pop(name, None)
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

    def _decode_binary(
        self, body: bytes, headers: Mapping[str, str], prefix: str | None = None
    ) -> Event:
        prefix = prefix or self.header_prefix
        obj: dict[str, Any] = {}
        for header, value in headers.items():
            if header.startswith(prefix):
                name = header[len(prefix) :]
                if name in ("data", "data_base64"):
                    raise DecodeError(f"header {header!r} is not a context attribute")
                obj[name] = value
        content_type = headers.get("content-type")
        if content_type is None:
            content_type = headers.get("content_type")
        if content_type is not None:
            obj["datacontenttype"] = content_type
        data: Any = None
        if body:
            if is_json_content_type(content_type):
                try:
                    data = self._decoder.decode(body)
                except msgspec.DecodeError as exc:
                    raise DecodeError(f"event data is not valid JSON: {exc}") from exc
            else:
                data = bytes(body)
        return self._from_attributes(obj, data)


def _header_value(value: Any) -> str:
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _format_time(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise DecodeError(f"attribute 'time' must be an RFC 3339 string, got {_kind(value)}")
    # RFC 3339 demands a full date, a 'T' (or space-free 't'), and an offset.
    if len(value) < 20 or value[10] not in "Tt":
        raise DecodeError(f"attribute 'time' is not RFC 3339: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DecodeError(f"attribute 'time' is not RFC 3339: {value!r}") from exc
    if parsed.utcoffset() is None:
        raise DecodeError(f"attribute 'time' has no UTC offset: {value!r}")
    return parsed


def _parse_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise DecodeError(f"attribute {name!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise DecodeError(f"attribute {name!r} must be an integer, got {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
