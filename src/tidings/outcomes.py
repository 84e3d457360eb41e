"""Handling outcomes: one record per attempt of a consumer group at an event, as stored.

An App records them (see :class:`~tidings._recorder.OutcomeRecorder`) on the
internal topic :data:`HANDLINGS_TOPIC`, a batch of records per message, so
that ``tidings trace`` can tell for every event of a flow which groups
handled it, after how many retries, how long it waited and how long its
handling took. A record names the event by where it is stored (topic,
partition, offset), which every hook knows, and by id when the hook has the
decoded event.
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
    "decode_handlings",
    "encode_handlings",
    "is_internal_topic",
]

#: Topics whose names start with this hold tidings' own messages, not an app's events.
INTERNAL_PREFIX = "tidings."
HANDLINGS_TOPIC = "tidings.handlings"
#: Header naming the format of a message of :data:`HANDLINGS_TOPIC`.
RECORD_HEADER = "tidings-record"
_FORMAT = "handlings/1"

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


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Handling])


def is_internal_topic(topic: str) -> bool:
    """True for tidings' own topics (handling records, reply inboxes)."""
    return topic.startswith(INTERNAL_PREFIX)


def encode_handlings(records: Sequence[Handling]) -> Message:
    """One message holding ``records``."""
    return Message(value=_encoder.encode(records), headers={RECORD_HEADER: _FORMAT})


def decode_handlings(message: Message) -> list[Handling]:
    """The records of a message of :data:`HANDLINGS_TOPIC` (DecodeError if it holds none)."""
    if message.headers.get(RECORD_HEADER) != _FORMAT:
        raise DecodeError(f"not a message of handling records ({RECORD_HEADER} header missing)")
    try:
        return _decoder.decode(message.value)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid handling records: {exc}") from exc
