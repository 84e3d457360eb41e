"""Messages <-> STOMP frames: the CloudEvents binding, written for RabbitMQ's STOMP plugin.

RabbitMQ turns the headers of a ``SEND`` frame into the AMQP message's headers
(and ``content-type`` into its content type), and an AMQP message's headers
into the headers of the ``MESSAGE`` frame. So binary mode writes CloudEvents
attributes as ``cloudEvents_<attribute>`` headers, the prefix of the
CloudEvents AMQP binding that the ``amqp://`` adapter writes and reads
(:mod:`tidings.brokers.rabbitmq._binding`): an AMQP client reads an event sent
over STOMP, and the other way round. ``cloudEvents:<attribute>`` (the
binding's other spelling) is read too. Structured mode sends the CloudEvents
JSON object with ``content-type: application/cloudevents+json``.

The adapter's own headers are the ``amqp://`` adapter's where they mean the
same: ``tidings-key`` (the partition key) and ``tidings-time`` (publish time,
milliseconds); plus ``tidings-id`` (the message's identity across
redeliveries and delayed retries) and ``tidings-tries`` (attempts made before
a delayed retry was sent through a delay queue). An application header whose
name STOMP or RabbitMQ would take for its own (``destination``, ``receipt``,
``x-...``, AMQP properties such as ``type``) travels as ``tidings-h-<name>``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from tidings.broker import Message
from tidings.codec import Codec

__all__ = ["ID", "TRIES", "codec_for", "identity", "read", "write"]

KEY = "tidings-key"
TIME = "tidings-time"
ID = "tidings-id"
TRIES = "tidings-tries"
_ESCAPED = "tidings-h-"
_PREFIX = "cloudEvents_"
_COLON_PREFIX = "cloudEvents:"
_OWN_PREFIX = "ce_"
_STRUCTURED = "application/cloudevents+json"
_NO_HEADERS: Mapping[str, str] = {}

#: Headers of a MESSAGE frame that STOMP or RabbitMQ set (never application headers).
_FRAME = frozenset(
    (
        "subscription",
        "destination",
        "message-id",
        "redelivered",
        "ack",
        "receipt",
        "content-length",
        "persistent",
        "transaction",
        "amqp-message-id",
        "timestamp",
        "priority",
        "correlation-id",
        "reply-to",
        "expiration",
        "user-id",
        "app-id",
        "cluster-id",
        "type",
        "content-encoding",
        "id",
        "host",
    )
)


def codec_for(binding: str) -> Codec:
    """The App's default codec for the URL's ``binding`` option."""
    return Codec("structured" if binding == "structured" else "binary")


def write(message: Message, structured: bool, now: float | None = None) -> dict[str, str]:
    """The headers of the ``SEND`` frame carrying ``message`` (``destination`` added by
    the caller)."""
    headers: dict[str, str] = {"persistent": "true"}
    content_type = _STRUCTURED if structured else None
    for name, value in message.headers.items():
        if name == "content-type":
            content_type = value
        elif name.startswith(_OWN_PREFIX):
            headers[_PREFIX + name[3:]] = value
        elif name in _FRAME or name.startswith(("x-", "tidings-", "cloudEvents")):
            headers[_ESCAPED + name] = value
        else:
            headers[name] = value
    if content_type is not None:
        headers["content-type"] = content_type
    if message.key is not None:
        headers[KEY] = message.key
    headers[TIME] = str(int((time.time() if now is None else now) * 1000))
    headers[ID] = message.id or uuid.uuid4().hex
    return headers


def identity(headers: Mapping[str, str]) -> str:
    """The message's identity: ``tidings-id``, else the AMQP message id, else STOMP's."""
    return headers.get(ID) or headers.get("amqp-message-id") or headers.get("message-id", "")


def _count(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0


def read(frame_headers: Mapping[str, str]) -> tuple[str | None, Mapping[str, str], int, float]:
    """``(key, headers, attempt, published_at)`` of a ``MESSAGE`` frame."""
    key: str | None = None
    published = 0.0
    before = 0
    counted = False
    headers: dict[str, str] = {}
    for name, value in frame_headers.items():
        if name.startswith(_PREFIX) or name.startswith(_COLON_PREFIX):
            headers[_OWN_PREFIX + name[12:]] = value
        elif name.startswith("tidings-"):
            if name == KEY:
                key = value
            elif name == TIME:
                published = _count(value) / 1000
            elif name == TRIES:
                before += _count(value)
            elif name.startswith(_ESCAPED):
                headers[name[len(_ESCAPED) :]] = value
            elif name != ID:
                headers[name] = value
        elif name == "x-delivery-count":
            before += _count(value)
            counted = True
        elif name == "content-type":
            if value != _STRUCTURED:
                headers[name] = value
        elif name not in _FRAME and not name.startswith("x-"):
            headers[name] = value
    if not counted and frame_headers.get("redelivered") == "true":
        before += 1  # a classic queue says only that it was delivered before
    if not published:
        stamp = frame_headers.get("timestamp")
        published = float(_count(stamp)) if stamp else time.time()
    return key, headers or _NO_HEADERS, before + 1, published
