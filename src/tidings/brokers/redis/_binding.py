"""Messages <-> stream entries, and the keys of a topic.

An entry's fields are ``v`` (the value: the encoded event, CloudEvents JSON in
structured mode by default), ``k`` (the partition key, absent without one) and
``h:<name>`` per header. Its id is ``<ms>-<offset>`` (see :mod:`._scripts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tidings.broker import Message

__all__ = ["Keys", "entry_fields", "parse_entry", "split_id"]

_VALUE = b"v"
_KEY = b"k"
_HEADER = b"h:"


class Keys:
    """The Redis keys tidings writes, under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def stream(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:s:{topic}:{partition}"

    def topic(self, topic: str) -> str:
        """A hash with the topic's settings (``partitions``, ``maxlen``, ``retention_ms``)."""
        return f"{self.prefix}:t:{topic}"

    def topics(self) -> str:
        """A set of every topic's name."""
        return f"{self.prefix}:topics"

    def lease(self, group: str, topic: str, partition: int) -> str:
        return f"{self.prefix}:lease:{group}:{topic}:{partition}"

    def dues(self, group: str, topic: str, partition: int) -> str:
        """A hash: stream id -> ``<due ms>:<key>`` of each retry waiting for its time."""
        return f"{self.prefix}:due:{group}:{topic}:{partition}"

    def members(self, group: str, topic: str) -> str:
        """A sorted set: member id -> last heartbeat (ms)."""
        return f"{self.prefix}:members:{group}:{topic}"


def entry_fields(message: Message) -> list[bytes | str]:
    """The field count, then the fields and values of ``message``'s entry."""
    fields: list[bytes | str] = [_VALUE, message.value]
    if message.key is not None:
        fields += [_KEY, message.key]
    for name, value in message.headers.items():
        fields += [_HEADER + name.encode(), value]
    return [str(len(fields)), *fields]


def parse_entry(
    fields: Mapping[bytes, bytes] | Sequence[bytes],
) -> tuple[bytes, str | None, Mapping[str, str]]:
    """``(value, key, headers)`` of an entry's fields (redis-py's dict, or a script's list)."""
    value = b""
    key: str | None = None
    headers: dict[str, str] = {}
    pairs = (
        fields.items()
        if isinstance(fields, Mapping)
        else zip(fields[::2], fields[1::2], strict=False)
    )
    for name, data in pairs:
        if name == _VALUE:
            value = data
        elif name == _KEY:
            key = data.decode()
        elif name[:2] == _HEADER:
            headers[name[2:].decode()] = data.decode()
    return value, key, headers


def split_id(stream_id: bytes | str) -> tuple[int, int]:
    """``(ms, offset)`` of a stream id."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
