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

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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


def write(message: Message, msg_id: str, attempt: int = 1, headers: bool = True) -> Properties:
    """The PUBLISH properties of ``message`` (``headers=False``: only the adapter's own)."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    pairs: list[tuple[str, str]] = []
    if headers:
        for name, value in message.headers.items():
            if name == "content-type":
                properties.ContentType = value
            else:
                pairs.append((_wire_name(name), value))
    if message.key is not None:
        pairs.append((KEY, message.key))
    pairs.append((MSG_ID, msg_id))
    if attempt > 1:
        pairs.append((ATTEMPT, str(attempt)))
    properties.UserProperty = pairs
    return properties


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
