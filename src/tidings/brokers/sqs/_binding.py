"""Messages <-> SNS/SQS messages: bodies and message attributes.

There is no CloudEvents protocol binding for SNS or SQS; this one follows the
shape of the others. In binary mode (the default) the codec writes the
CloudEvents attributes as ``ce_<attribute>`` headers and ``content-type``; each
header travels as a ``String`` message attribute of the same name, so an SQS
consumer sees ``ce_id``, ``ce_type``, ``ce_source`` beside the body. Structured
mode sends the CloudEvents JSON object as the body.

SNS and SQS allow 10 message attributes per message, with names of
``[A-Za-z0-9_.-]`` (not starting with ``AWS.`` or ``Amazon.``) and non-empty
values. Headers that do not fit (an 11th, a name such as ``ü``, an empty value)
travel together as JSON in one attribute, ``tidings-headers``, and are read
back as headers like the rest.

Bodies are text: a value that is valid UTF-8 (and XML-safe, as SQS demands)
is sent as is; any other value as base64, marked by ``tidings-encoding``. The
adapter's own attributes never reach the application: ``tidings-key`` (the
partition key), ``tidings-encoding`` and ``tidings-headers``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from tidings.broker import Message
from tidings.codec import Codec

__all__ = ["KEY", "MAX_ATTRIBUTES", "Wire", "codec_for", "read", "write"]

KEY = "tidings-key"
ENCODING = "tidings-encoding"
HEADERS = "tidings-headers"
MAX_ATTRIBUTES = 10
_OWN = frozenset((KEY, ENCODING, HEADERS))
_NAME = re.compile(r"(?!(?i:aws|amazon)\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")
#: Characters SQS refuses in a body or an attribute value (XML 1.0's excluded ones).
_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NO_HEADERS: Mapping[str, str] = {}
_json_headers = msgspec.json.Decoder(dict[str, str])


def codec_for(binding: str) -> Codec:
    """The App's default codec for the URL's ``binding`` option."""
    return Codec("structured" if binding == "structured" else "binary")


def _attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _direct(name: str, value: str) -> bool:
    return (
        bool(value)
        and _NAME.fullmatch(name) is not None
        and ".." not in name
        and not name.endswith(".")
        and name not in _OWN
        and _UNSAFE.search(value) is None
    )


class Wire:
    """One message as SNS/SQS take it: text body, attributes, and its size in bytes."""

    __slots__ = ("attributes", "body", "size")

    def __init__(self, body: str, attributes: dict[str, Any], size: int) -> None:
        self.body = body
        self.attributes = attributes
        self.size = size


def write(message: Message) -> Wire:
    """The body and message attributes carrying ``message``."""
    attributes: dict[str, Any] = {}
    size = 0
    try:
        body = message.value.decode()
        text = bool(body) and _UNSAFE.search(body) is None
    except UnicodeDecodeError:
        text = False
    if not text:
        body = base64.b64encode(message.value).decode() or "="
        attributes[ENCODING] = _attribute("base64")
        size += len(ENCODING) + 6
    if message.key is not None:
        attributes[KEY] = _attribute(message.key)
        size += len(KEY) + len(message.key.encode())
    room = MAX_ATTRIBUTES - len(attributes)
    rest: dict[str, str] = {}
    headers = message.headers
    direct = [(n, v) for n, v in headers.items() if _direct(n, v)]
    if len(direct) < len(headers) or len(direct) > room:
        keep = dict(direct[: room - 1])
        rest = {n: v for n, v in headers.items() if n not in keep}
        direct = list(keep.items())
    for name, value in direct:
        attributes[name] = _attribute(value)
        size += len(name) + len(value.encode())
    if rest:
        packed = msgspec.json.encode(rest).decode()
        attributes[HEADERS] = _attribute(packed)
        size += len(HEADERS) + len(packed.encode())
    return Wire(body, attributes, size + len(body.encode()))


def read(
    received: Mapping[str, Any],
) -> tuple[bytes, str | None, Mapping[str, str], int, float]:
    """``(value, key, headers, attempt, published_at)`` of a received SQS message."""
    raw: Mapping[str, Any] = received.get("MessageAttributes") or _NO_HEADERS
    system: Mapping[str, str] = received.get("Attributes") or _NO_HEADERS
    body: str = received.get("Body", "")
    key: str | None = None
    encoded = False
    headers: dict[str, str] = {}
    for name, attribute in raw.items():
        value = attribute.get("StringValue")
        if value is None:
            continue  # Binary or Number attributes of another producer
        if name == KEY:
            key = value
        elif name == ENCODING:
            encoded = value == "base64"
        elif name == HEADERS:
            try:
                headers.update(_json_headers.decode(value))
            except msgspec.DecodeError:
                headers[name] = value
        else:
            headers[name] = value
    value = base64.b64decode(body) if encoded else body.encode()
    attempt = int(system.get("ApproximateReceiveCount", "1"))
    published = int(system.get("SentTimestamp", "0")) / 1000
    return value, key, headers or _NO_HEADERS, attempt, published
