"""Message <-> MQTT 5 PUBLISH properties (the CloudEvents MQTT binding, binary mode).

CloudEvents attributes travel as user properties named after the attribute
(``id``, ``source``, ``type``, ``specversion``, extensions), as the binding
says; ``datacontenttype`` is the Content Type property. The codec names them
``ce_<attribute>`` in ``Message.headers``; attribute names are ``[a-z0-9]+``, so
a user property of that shape is read back as ``ce_<name>``. An application
header of that shape (``n``, ``h1``), which would read as an attribute, travels
as ``_<name>`` (and a name starting with ``_`` gets one more ``_``).

The adapter adds user properties of its own, which never reach the application:
``tidings-key`` (the partition key), ``tidings-msg-id`` (the message's identity
across redeliveries) and ``tidings-attempt`` (set on a redelivered copy).
"""

from __future__ import annotations

import re
import struct

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from tidings.broker import Message

__all__ = ["ATTEMPT", "KEY", "MSG_ID", "Received", "read", "write"]

KEY = "tidings-key"
MSG_ID = "tidings-msg-id"
ATTEMPT = "tidings-attempt"
_OWN = frozenset((KEY, MSG_ID, ATTEMPT))
_ATTRIBUTE_PREFIX = "ce_"
_ATTRIBUTE = re.compile(r"[a-z0-9]+")
_ESCAPED = re.compile(r"_+[a-z0-9]+")


def _wire_name(name: str) -> str:
    if name.startswith(_ATTRIBUTE_PREFIX) and _ATTRIBUTE.fullmatch(name, 3):
        return name[3:]
    if _ATTRIBUTE.fullmatch(name) or _ESCAPED.fullmatch(name):
        return "_" + name
    return name


def _header_name(name: str) -> str:
    if _ATTRIBUTE.fullmatch(name):
        return _ATTRIBUTE_PREFIX + name
    if _ESCAPED.fullmatch(name):
        return name[1:]
    return name


#: paho's tables of property names and types, built once (a Properties builds them per instance).
_TABLES = Properties(PacketTypes.PUBLISH).__dict__  # type: ignore[no-untyped-call]
_CONTENT_TYPE = b"\x03"
_USER_PROPERTY = b"\x26"


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


class _PublishProperties(Properties):
    """A PUBLISH's Content Type and User Properties, packed in one pass.

    paho's ``Properties`` rebuilds its tables per instance and scans every
    property name on each assignment and again in ``pack`` (a third of a
    publish's time); these are the only two properties the adapter writes, so
    it encodes them itself (MQTT 5, section 2.2.2.2), to the same bytes.
    """

    def __init__(self, content_type: str | None, pairs: list[tuple[str, str]]) -> None:
        fields = self.__dict__
        fields.update(_TABLES)  # shared, never written
        if content_type is not None:
            fields["ContentType"] = content_type
        fields["UserProperty"] = pairs

    def pack(self) -> bytes:
        out = bytearray()
        content_type: str | None = self.__dict__.get("ContentType")
        if content_type is not None:
            out += _CONTENT_TYPE + _utf8(content_type)
        for name, value in self.__dict__["UserProperty"]:
            out += _USER_PROPERTY + _utf8(name) + _utf8(value)
        return bytes(VariableByteIntegers.encode(len(out))) + out  # type: ignore[no-untyped-call]


def write(message: Message, msg_id: str, attempt: int = 1, headers: bool = True) -> Properties:
    """The PUBLISH properties of ``message`` (``headers=False``: only the adapter's own)."""
    content_type = None
    pairs: list[tuple[str, str]] = []
    if headers:
        for name, value in message.headers.items():
            if name == "content-type":
                content_type = value
            else:
                pairs.append((_wire_name(name), value))
    if message.key is not None:
        pairs.append((KEY, message.key))
    pairs.append((MSG_ID, msg_id))
    if attempt > 1:
        pairs.append((ATTEMPT, str(attempt)))
    return _PublishProperties(content_type, pairs)


class Received:
    """What :func:`read` found in a received message's properties."""

    __slots__ = ("attempt", "headers", "key", "msg_id")

    def __init__(
        self, headers: dict[str, str], key: str | None, msg_id: str | None, attempt: int
    ) -> None:
        self.headers = headers
        self.key = key
        self.msg_id = msg_id
        self.attempt = attempt


def read(properties: Properties | None) -> Received:
    """Headers, key, message id and attempt of a received message."""
    headers: dict[str, str] = {}
    key = msg_id = None
    attempt = 1
    if properties is None:
        return Received(headers, key, msg_id, attempt)
    content_type = getattr(properties, "ContentType", None)
    if content_type is not None:
        headers["content-type"] = content_type
    pairs: list[tuple[str, str]] = getattr(properties, "UserProperty", None) or []
    for name, value in pairs:
        if name not in _OWN:
            headers[_header_name(name)] = value
        elif name == KEY:
            key = value
        elif name == MSG_ID:
            msg_id = value
        elif value.isdigit():
            attempt = int(value)
    return Received(headers, key, msg_id, attempt)
