"""Stored events as bytes: the CloudEvents JSON structured encoding, as the bus carries them.

One encoding serves the store's rows, the embedded broker's messages and the
outbox, so an event is encoded once per append.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tidings.codec import Codec
from tidings.event import Event
from tidings.eventsourcing.store import StoredEvent

__all__ = ["decode_rows", "encode_events"]

_codec = Codec()


def encode_events(stream_id: str, events: Sequence[Event]) -> tuple[list[Event], list[bytes]]:
    """The events with ``subject`` set to the stream id, and their encodings."""
    stamped = [
        event if event.subject == stream_id else msgspec.structs.replace(event, subject=stream_id)
        for event in events
    ]
    return stamped, [_codec.encode_structured(event) for event in stamped]


def decode_rows(rows: Sequence[tuple[str, int, int, bytes]]) -> list[StoredEvent]:
    """``(stream_id, version, position, encoded event)`` rows as :class:`StoredEvent` values."""
    decode = _codec.decode_structured
    return [
        StoredEvent(stream_id, version, position, decode(bytes(blob)))
        for stream_id, version, position, blob in rows
    ]
