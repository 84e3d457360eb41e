"""Message <-> NATS message: headers, the partition key, the dedup id, ack metadata.

CloudEvents attributes travel as ``ce-`` headers (the NATS protocol binding; the
codec percent-encodes their values). The adapter adds two headers of its own:
``Nats-Msg-Id`` (the event id: JetStream drops a publish repeating one within
the stream's duplicate window) and ``Tidings-Key`` (the partition key). Other
``Nats-`` headers are the server's and are not handed to the application.

NATS header names are RFC 7230 tokens and values one line of text: a header
that is neither (``ü: ö``, a value with a line break) travels as
``Tidings-Pct-<percent-encoded name>: <percent-encoded value>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from tidings.broker import Message

__all__ = ["KEY_HEADER", "MSG_ID_HEADER", "AckInfo", "ack_info", "from_wire", "to_wire"]

KEY_HEADER = "Tidings-Key"
MSG_ID_HEADER = "Nats-Msg-Id"
_SERVER_PREFIX = "Nats-"
_ENCODED_PREFIX = "Tidings-Pct-"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Printable ASCII but '%' stays as is in the key header (most keys go through unchanged).
_KEY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%") + " "


_TOKENS: dict[str, bool] = {}


def _plain(name: str, value: str) -> bool:
    token = _TOKENS.get(name)
    if token is None:
        token = _TOKENS[name] = _TOKEN.fullmatch(name) is not None
        if len(_TOKENS) > 4096:  # names come from code, rarely from data: stay small
            _TOKENS.clear()
    # nats-py strips values: spaces at either end must travel encoded too.
    return (
        token
        and value.isascii()
        and (value.isprintable() or not value)
        and value[:1] != " "
        and value[-1:] != " "
    )


def to_wire(message: Message) -> dict[str, str] | None:
    """The NATS headers of ``message`` (None when there are none: a lighter frame)."""
    if not message.headers and message.key is None and message.id is None:
        return None
    headers: dict[str, str] = {}
    for name, value in message.headers.items():
        if _plain(name, value):
            headers[name] = value
        else:
            headers[_ENCODED_PREFIX + quote(name, safe="")] = quote(value, safe="")
    if message.key is not None:
        headers[KEY_HEADER] = quote(message.key, safe=_KEY_SAFE)
    if message.id is not None:
        headers[MSG_ID_HEADER] = message.id
    return headers


def from_wire(headers: Mapping[str, str] | None) -> tuple[dict[str, str], str | None]:
    """``(application headers, key)`` of a received message."""
    if not headers:
        return {}, None
    key = headers.get(KEY_HEADER)
    if key is not None and "%" in key:
        key = unquote(key)
    own: dict[str, str] = {}
    for name, value in headers.items():
        if name[:1] not in "NT":  # ce-..., content-type...: the common case, one check
            own[name] = value
        elif name.startswith(_ENCODED_PREFIX):
            own[unquote(name[len(_ENCODED_PREFIX) :])] = unquote(value)
        elif name != KEY_HEADER and not name.startswith(_SERVER_PREFIX):
            own[name] = value
    return own, key


class AckInfo:
    """What JetStream tells about a delivery in its ack subject."""

    __slots__ = ("consumer", "delivered", "pending", "published_at", "sequence", "stream")

    def __init__(
        self,
        stream: str,
        consumer: str,
        delivered: int,
        sequence: int,
        published_at: float,
        pending: int,
    ) -> None:
        self.pending = pending
        self.stream = stream
        self.consumer = consumer
        self.delivered = delivered
        self.sequence = sequence
        self.published_at = published_at


def ack_info(reply: str) -> AckInfo | None:
    """Parse ``$JS.ACK.[domain.hash.]stream.consumer.delivered.sseq.dseq.ts.pending[.token]``.

    None for anything else (not a JetStream delivery).
    """
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    base = 2 if len(tokens) == 9 else 4
    try:
        return AckInfo(
            tokens[base],
            tokens[base + 1],
            int(tokens[base + 2]),
            int(tokens[base + 3]),
            int(tokens[base + 5]) / 1e9,
            int(tokens[base + 6]),
        )
    except (ValueError, IndexError):
        return None
