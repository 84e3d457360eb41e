"""Messages <-> Pub/Sub messages: data, attributes and the ordering key.

This follows the CloudEvents Google Cloud Pub/Sub protocol binding. In binary
mode (the default) the codec writes each CloudEvents attribute as a ``ce-``
prefixed message attribute (``ce-id``, ``ce-type``, ``ce-source``, ...) and the
media type as ``content-type``; the data is the message's data, as is. Values
are percent-encoded where they are not plain ASCII, as in the HTTP binding
(which the Pub/Sub binding's attribute values follow); tidings decodes them
back, and reads ``ce_`` attributes and structured JSON data just as well.
Structured mode sends the CloudEvents JSON object as the data.

The partition key travels as the message's ordering key, so subscriptions
with message ordering deliver a key's messages in publish order. An empty key
(which Pub/Sub would read as none), and the key of a delayed event (which the
consuming App keeps until it is due: it must not hold its key meanwhile),
travel as the attribute ``tidings-key`` instead.

Pub/Sub allows 100 attributes per message, with names of at most 256 bytes
(not starting with ``goog``) and values of at most 1024 bytes. Headers that do
not fit travel together as JSON in one attribute, ``tidings-headers``; the
adapter's own attributes never reach the application.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import msgspec
from google.pubsub_v1.types import PubsubMessage

from tidings.broker import Message
from tidings.codec import Codec
from tidings.errors import ConfigurationError

__all__ = [
    "HEADERS",
    "KEY",
    "Wire",
    "codec_for",
    "exact_size",
    "fields",
    "read",
    "wire_size",
    "write",
]

#: The protobuf message under the library's proto-plus ``PubsubMessage`` (built and read
#: directly: proto-plus wraps every field access, which costs more than the rest here).
Wire: TypeAlias = Any
_Wire: Any = PubsubMessage.pb()

KEY = "tidings-key"
HEADERS = "tidings-headers"
EMPTY = "tidings-empty"
_OWN = frozenset((KEY, HEADERS, EMPTY))
MAX_ATTRIBUTES = 100
_NAME_BYTES = 256
_VALUE_BYTES = 1024
_KEY_BYTES = 1024
_NO_HEADERS: Mapping[str, str] = {}
#: Header names found fit to be attributes as they are (a codec writes the same few):
#: the common message is checked against this set in one call, not name by name.
_valid_names: set[str] = set()
_VALID_NAMES = 4096
#: Characters that take at most 1024 bytes.
_SHORT = _VALUE_BYTES // 4
_json_headers = msgspec.json.Decoder(dict[str, str])


def codec_for(binding: str) -> Codec:
    """The App's default codec for the URL's ``binding`` option."""
    if binding == "structured":
        return Codec("structured")
    return Codec("binary", header_prefix="ce-")


def _direct(name: str, value: str) -> bool:
    # A character takes at most 4 bytes: short strings need no encoding to be measured.
    return (
        0 < len(name) <= _NAME_BYTES
        and (len(name) <= _NAME_BYTES // 4 or len(name.encode()) <= _NAME_BYTES)
        and (len(value) <= _VALUE_BYTES // 4 or len(value.encode()) <= _VALUE_BYTES)
        and name[:4].lower() != "goog"
        and name not in _OWN
    )


def fields(message: Message) -> tuple[Mapping[str, str], str, int]:
    """The attributes and the ordering key carrying ``message``, and at least the bytes
    it counts against Pub/Sub's limit (never fewer: :func:`wire_size` tells exactly)."""
    headers = message.headers
    attributes: Mapping[str, str] = headers
    chars = 0
    # The common case, checked in C: names seen valid before, values short enough to
    # fit (all of them together, or else each).
    if headers and len(headers) <= MAX_ATTRIBUTES - 2 and _valid_names.issuperset(headers):
        chars = sum(map(len, headers.values()))
        if chars > _SHORT and max(map(len, headers.values())) > _SHORT:
            attributes, chars = _fit(headers)
        else:
            chars += sum(map(len, headers))
    elif headers:
        attributes, chars = _fit(headers)
    key = message.key or ""
    if message.key is not None:
        if len(key) > _KEY_BYTES // 4 and len(key.encode()) > _KEY_BYTES:
            raise ConfigurationError(
                f"a Pub/Sub ordering key holds at most {_KEY_BYTES} bytes; the key "
                f"{key[:40]!r}... has {len(key.encode())}"
            )
        if not key or message.deliver_at is not None:
            # A delayed event (kept by the consuming App until due) must not hold its key
            # meanwhile: it travels without an ordering key.
            attributes = {**attributes, KEY: key}
            key = ""
    if not message.value and not attributes and not key:
        # Pub/Sub refuses a message with neither data nor attributes.
        attributes = {EMPTY: "1"}
    # A character takes at most 4 bytes; packing adds quotes, commas and escapes.
    return attributes, key, len(message.value) + 6 * (chars + len(key) + 16) + 64


def _fit(headers: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Headers as attributes (those that cannot be one packed into ``tidings-headers``),
    and their characters."""
    attributes: dict[str, str] = {}
    rest: dict[str, str] = {}
    chars = 0
    for name, value in headers.items():
        chars += len(name) + len(value)
        if _direct(name, value) and len(attributes) < MAX_ATTRIBUTES - 2:
            attributes[name] = value
            if len(_valid_names) < _VALID_NAMES:
                _valid_names.add(name)
        else:
            rest[name] = value
    if rest:
        packed = msgspec.json.encode(rest).decode()
        if len(packed.encode()) > _VALUE_BYTES:
            raise ConfigurationError(
                f"headers {sorted(rest)[:5]} do not fit Pub/Sub attributes (at most 100, "
                "names up to 256 bytes not starting with 'goog', values up to 1024 bytes)"
            )
        attributes[HEADERS] = packed
    return attributes, chars


def write(message: Message) -> tuple[Wire, int]:
    """The Pub/Sub message carrying ``message``, and at least the bytes it counts against
    Pub/Sub's limit (see :func:`fields`)."""
    attributes, key, bound = fields(message)
    return _Wire(data=message.value, attributes=attributes, ordering_key=key), bound


def wire_size(message: Wire) -> int:
    """Bytes ``message`` counts against Pub/Sub's 10 MB limit (data, attributes, key)."""
    return exact_size(message.data, message.attributes, message.ordering_key)


def exact_size(data: bytes, attributes: Mapping[str, str], key: str) -> int:
    """Bytes a message of these fields counts against Pub/Sub's 10 MB limit."""
    size = len(data) + len(key.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value.encode())
    return size


def read(message: Wire) -> tuple[bytes, str | None, Mapping[str, str]]:
    """``(value, key, headers)`` of a received Pub/Sub message."""
    key: str | None = message.ordering_key or None
    received = message.attributes
    if not received:
        return message.data, key, _NO_HEADERS
    headers: dict[str, str] = {}
    for name, value in received.items():
        if name in _OWN:
            if name == KEY:
                key = value
            elif name == HEADERS:
                try:
                    headers.update(_json_headers.decode(value))
                except msgspec.DecodeError:
                    headers[name] = value
        else:
            headers[name] = value
    return message.data, key, headers or _NO_HEADERS
