"""Messages <-> AMQP 0-9-1 messages: the CloudEvents AMQP protocol binding's transport half.

In binary mode (the default) the codec writes CloudEvents attributes as
``ce_<attribute>`` headers (as on every tidings broker, so any App's codec
reads them); they travel as the AMQP application properties
``cloudEvents_<attribute>`` the binding names, and ``datacontenttype`` as the
``content-type`` property. On reading, ``cloudEvents_<attribute>`` and
``cloudEvents:<attribute>`` (the binding's other spelling) become
``ce_<attribute>`` again. Structured mode sends the
CloudEvents JSON object with content type ``application/cloudevents+json``.

The routing key is ``<partition>.<type>``: the partition the group queues are
bound by, then the CloudEvents ``type`` (so a binding such as ``0.order.#``
selects by type). The adapter's own headers never reach the application:
``tidings-key`` (the partition key), ``tidings-time`` (the publish time in
milliseconds: the ``timestamp`` property has whole seconds) and
``x-tidings-attempts`` (attempts made before a delayed retry was sent through a
delay queue). ``message_id`` is the
message's identity across redeliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import msgspec

from tidings.broker import Message
from tidings.codec import Codec

__all__ = ["ATTEMPTS", "KEY", "codec_for", "read", "routing_key", "write"]

KEY = "tidings-key"
TIME = "tidings-time"
ATTEMPTS = "x-tidings-attempts"
_PREFIX = "cloudEvents_"
_COLON_PREFIX = "cloudEvents:"
_OWN_PREFIX = "ce_"
_TYPE = _OWN_PREFIX + "type"
_STRUCTURED = "application/cloudevents+json"
_NO_HEADERS: Mapping[str, str] = {}


class _Typed(msgspec.Struct):
    type: str = "event"


_type_decoder = msgspec.json.Decoder(_Typed)


def codec_for(binding: str) -> Codec:
    """The App's default codec for the URL's ``binding`` option."""
    if binding == "structured":
        return Codec("structured")
    return Codec("binary")


def event_type(message: Message) -> str:
    """The CloudEvents type of ``message``, from its headers or its JSON body."""
    found = message.headers.get(_TYPE)
    if found is None and message.value[:1] == b"{":
        try:
            found = _type_decoder.decode(message.value).type
        except msgspec.DecodeError:
            found = None
    return (found or "event")[:200]


def routing_key(partition: int, message: Message) -> str:
    return f"{partition}.{event_type(message)}"


def write(message: Message, published: datetime, structured: bool) -> aio_pika.Message:
    """The AMQP message carrying ``message`` (persistent, with a fresh ``message_id``)."""
    headers: dict[str, Any] = {}
    content_type = _STRUCTURED if structured else None
    for name, value in message.headers.items():
        if name == "content-type":
            content_type = value
        elif name.startswith(_OWN_PREFIX):
            headers[_PREFIX + name[3:]] = value
        else:
            headers[name] = value
    if message.key is not None:
        headers[KEY] = message.key
    headers[TIME] = int(published.timestamp() * 1000)
    return aio_pika.Message(
        message.value,
        headers=headers,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.id or uuid.uuid4().hex,
        timestamp=published,
    )


def copy(incoming: aio_pika.abc.AbstractIncomingMessage, attempts: int) -> aio_pika.Message:
    """``incoming`` again, recording the ``attempts`` made (for a delay queue)."""
    headers = {k: v for k, v in (incoming.headers or {}).items() if not k.startswith("x-")}
    if attempts:
        headers[ATTEMPTS] = attempts
    return aio_pika.Message(
        incoming.body,
        headers=headers,
        content_type=incoming.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=incoming.message_id,
        timestamp=incoming.timestamp,
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | str) else 0


def read(
    incoming: aio_pika.abc.AbstractIncomingMessage,
) -> tuple[str | None, Mapping[str, str], int, float]:
    """``(key, headers, attempt, published_at)`` of a received message."""
    raw = incoming.headers
    key: str | None = None
    millis: int | None = None
    before = 0
    headers: dict[str, str] = {}
    if raw:
        for name, value in raw.items():
            if name == KEY:
                key = _text(value)
            elif name == TIME:
                millis = _count(value)
            elif name == ATTEMPTS:
                before = _count(value)
            elif name == "x-delivery-count":
                before += _count(value)
            elif name.startswith("x-"):
                continue  # x-death and other broker headers
            elif name.startswith((_PREFIX, _COLON_PREFIX)):
                headers[_OWN_PREFIX + name[12:]] = _text(value)
            else:
                headers[name] = _text(value)
    if incoming.content_type is not None and incoming.content_type != _STRUCTURED:
        headers["content-type"] = incoming.content_type
    stamp = incoming.timestamp
    if millis:
        published = millis / 1000
    else:
        published = stamp.replace(tzinfo=stamp.tzinfo or UTC).timestamp() if stamp else 0.0
    return key, headers or _NO_HEADERS, before + 1, published
