"""Handling outcomes: one record per attempt of a consumer group at an event, as stored.

An App records them (see :class:`~tidings._recorder.OutcomeRecorder`) on the
internal topic :data:`HANDLINGS_TOPIC`, a batch of records per message, so
that ``tidings trace`` can tell for every event of a flow which groups
handled it, after how many retries, how long it waited and how long its
handling took. A record names the event by where it is stored (topic,
partition, offset), which every hook knows; a failed attempt's record also
carries the event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import msgspec

from tidings.broker import Message
from tidings.errors import DecodeError

__all__ = [
    "HANDLINGS_TOPIC",
    "INTERNAL_PREFIX",
    "RECORD_HEADER",
    "Handling",
    "Outcome",
    "Row",
    "decode_handlings",
    "encode_handlings",
    "encode_rows",
    "is_internal_topic",
]

#: Topics whose names start with this hold tidings' own messages, not an app's events.
INTERNAL_PREFIX = "tidings."
HANDLINGS_TOPIC = "tidings.handlings"
#: Header naming the format of a message of :data:`HANDLINGS_TOPIC`.
RECORD_HEADER = "tidings-record"
_FORMAT = "handlings/2"

Outcome: TypeAlias = Literal["handled", "retried", "dead_lettered", "committed"]


class Handling(msgspec.Struct, frozen=True, array_like=True):
    """How one attempt of ``group`` at the event stored at ``topic/partition/offset`` ended.

    Stored as a JSON array in field order (compact: an App writes one per
    handling). The event's correlation and causation are in the event itself.

    ``at``: Unix time the attempt ended. ``seconds``: how long the handling
    took (known for ``handled``). ``published_at``: when the broker stored the
    event, so ``at - seconds - published_at`` is how long it waited.
    """

    app: str
    subscription: str
    group: str
    topic: str
    partition: int
    offset: int
    attempt: int
    outcome: Outcome
    at: float
    published_at: float
    event: str | None = None
    seconds: float | None = None
    error: str | None = None
    delay: float | None = None
    """Seconds until the next attempt (``retried``)."""
    dead_letter_topic: str | None = None
    source: str | None = None
    """The CloudEvents source of the app's events (its follow-ups carry it)."""

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    @property
    def started(self) -> float | None:
        return None if self.seconds is None else self.at - self.seconds


#: A handling as the recorder keeps it until written (a tuple is cheap to make):
#: subscription, group, topic, partition, offset, attempt, outcome, at, published_at,
#: event id, seconds, error, delay, dead-letter topic.
Row: TypeAlias = tuple[
    str, str, str, int, int, int, Outcome, float, float,
    str | None, float | None, str | None, float | None, str | None,
]  # fmt: skip


class _Batch(msgspec.Struct, array_like=True):
    """A message of records: the app and source once, then the rows as recorded."""

    app: str
    source: str | None
    rows: list[Row]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Batch)


def encode_rows(app: str, source: str | None, rows: Sequence[Row]) -> Message:
    """One message holding the recorder's ``rows`` (see :data:`Row`), encoded in C.

    (The rows are written as recorded: any per-row reshaping in Python would
    cost more than the bytes it saves.)
    """
    value = _encoder.encode(_Batch(app, source, list(rows)))
    return Message(value=value, headers={RECORD_HEADER: _FORMAT})


def encode_handlings(records: Sequence[Handling]) -> Message:
    """One message holding ``records`` (all of one app)."""
    first = records[0] if records else None
    return encode_rows(
        "" if first is None else first.app,
        None if first is None else first.source,
        [
            (
                r.subscription,
                r.group,
                r.topic,
                r.partition,
                r.offset,
                r.attempt,
                r.outcome,
                r.at,
                r.published_at,
                r.event,
                r.seconds,
                r.error,
                r.delay,
                r.dead_letter_topic,
            )
            for r in records
        ],
    )


def decode_handlings(message: Message) -> list[Handling]:
    """The records of a message of :data:`HANDLINGS_TOPIC` (DecodeError if it holds none)."""
    if message.headers.get(RECORD_HEADER) != _FORMAT:
        raise DecodeError(f"not a message of handling records ({RECORD_HEADER} header missing)")
    try:
        batch = _decoder.decode(message.value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"invalid handling records: {exc}") from exc
    return [Handling(batch.app, *row, source=batch.source) for row in batch.rows]


def is_internal_topic(topic: str) -> bool:
    """True for tidings' own topics (handling records, reply inboxes)."""
    return topic.startswith(INTERNAL_PREFIX)
