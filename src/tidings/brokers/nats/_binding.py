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

import contextlib
import re
from collections.abc import Mapping
from typing import TypeAlias
from urllib.parse import quote, unquote

from tidings.broker import Message

__all__ = [
    "KEY_HEADER",
    "MSG_ID_HEADER",
    "AckInfo",
    "ack_info",
    "from_wire",
    "pull_status",
    "read_headers",
    "to_wire",
]

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


def read_headers(block: bytes | None) -> tuple[dict[str, str], str | None]:
    """``(application headers, key)`` of a received header block, in one pass.

    What :func:`from_wire` gives for the headers nats-py parses from ``block``
    (``NATS/1.0`` then ``name: value`` lines; names ASCII without whitespace,
    else dropped; values stripped, UTF-8 with replacement), without building
    nats-py's dict first. (One difference, for messages no client writes: when
    a plain and a ``Tidings-Pct-`` header name the same header, the later line
    wins here, the later distinct name there.)
    """
    own: dict[str, str] = {}
    key = None
    if not block:
        return own, key
    names = _OWN_NAMES
    for line in block.decode("utf-8", "replace").split("\r\n")[1:]:
        raw, sep, value = line.partition(":")
        if not sep:
            continue
        name = names.get(raw)
        if name is not None:  # ce-..., content-type...: the common case
            own[name] = value.strip(_WHITESPACE)
            continue
        name, kind = _kind(raw)
        if kind == _OWN:
            own[name] = value.strip(_WHITESPACE)
        elif kind == _KEY:
            key = value.strip(_WHITESPACE)
            if "%" in key:
                key = unquote(key)
        elif kind == _ENCODED:
            own[unquote(name[len(_ENCODED_PREFIX) :])] = unquote(value.strip(_WHITESPACE))
    return own, key


#: What ``bytes.strip()`` removes, which nats-py applies to values.
_WHITESPACE = " \t\n\r\x0b\x0c"
#: What makes nats-py drop a header name (``str.isspace`` in ASCII).
_SPACE = re.compile(r"[\s\x1c-\x1f]")
_OWN, _KEY, _ENCODED, _DROPPED = range(4)
#: Raw names (as on the wire) of application headers, and the name they stand for.
_OWN_NAMES: dict[str, str] = {}
_KINDS: dict[str, tuple[str, int]] = {}


def _kind(raw: str) -> tuple[str, int]:
    """What a raw header name is: an application header, the key, encoded, or dropped."""
    known = _KINDS.get(raw)
    if known is not None:
        return known
    name = raw.strip(_WHITESPACE)
    if not raw.isascii() or _SPACE.search(name):
        kind = _DROPPED  # as nats-py drops it
    elif name == KEY_HEADER:
        kind = _KEY
    elif name.startswith(_ENCODED_PREFIX):
        kind = _ENCODED
    elif name.startswith(_SERVER_PREFIX):
        kind = _DROPPED
    else:
        kind = _OWN
    if len(_KINDS) > 4096:  # names come from code, rarely from data: stay small
        _KINDS.clear()
        _OWN_NAMES.clear()
    _KINDS[raw] = (name, kind)
    if kind == _OWN:
        _OWN_NAMES[raw] = name
    return name, kind


def pull_status(block: bytes | None) -> tuple[int, int] | None:
    """``(status, pending messages)`` of a pull request's end (408, 409, 404...).

    None for anything else: no status, or 100 (a heartbeat, not an end).
    """
    if not block or block[8:9] != b" ":
        return None
    code = block[9:12]
    if not code.isdigit() or code == b"100":
        return None
    pending = 0
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip() == b"Nats-Pending-Messages":
            with contextlib.suppress(ValueError):
                pending = int(value)
    return int(code), pending


#: ``(stream, consumer, delivered, stream sequence, published at, pending)`` of a delivery.
AckInfo: TypeAlias = tuple[bytes, bytes, int, int, float, int]


def ack_info(reply: bytes) -> AckInfo | None:
    """Parse ``$JS.ACK.[domain.hash.]stream.consumer.delivered.sseq.dseq.ts.pending[.token]``.

    None for anything else (not a JetStream delivery).
    """
    tokens = reply.split(b".")
    if len(tokens) < 9 or tokens[0] != b"$JS" or tokens[1] != b"ACK":
        return None
    base = 2 if len(tokens) == 9 else 4
    try:
        return (
            tokens[base],
            tokens[base + 1],
            int(tokens[base + 2]),
            int(tokens[base + 3]),
            int(tokens[base + 5]) / 1e9,
            int(tokens[base + 6]),
        )
    except (ValueError, IndexError):
        return None
