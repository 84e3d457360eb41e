"""Dead letters: the failure record that travels with an event to ``<topic>.dlq``.

The event itself is forwarded unchanged (its exact bytes and headers); the
failure record rides in extra ``tidings-*`` headers, so a dead letter can be
read, redriven to its origin, or purged without touching its content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tidings.broker import Delivery, Message
from tidings.codec import Codec
from tidings.errors import DecodeError
from tidings.event import Event

__all__ = ["DLQ_SUFFIX", "DeadLetter", "dead_letter_message", "dead_letter_topic"]

DLQ_SUFFIX = ".dlq"
_PREFIX = "tidings-"
_MAX_MESSAGE = 2000


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def _time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def dead_letter_message(
    delivery: Delivery,
    error: BaseException,
    first_failure: float,
    last_failure: float,
    subscription: str,
) -> Message:
    """The message to store in the DLQ for ``delivery``, which failed with ``error``."""
    error_type = type(error)
    headers = {k: v for k, v in delivery.headers.items() if not k.startswith(_PREFIX)}
    headers.update(
        {
            "tidings-error-type": f"{error_type.__module__}.{error_type.__qualname__}",
            "tidings-error-message": str(error)[:_MAX_MESSAGE],
            "tidings-attempts": str(delivery.attempt),
            "tidings-first-failure": _time(first_failure),
            "tidings-last-failure": _time(last_failure),
            "tidings-origin-topic": delivery.topic,
            "tidings-origin-partition": str(delivery.partition),
            "tidings-origin-offset": str(delivery.offset),
            "tidings-origin-group": delivery.group,
            "tidings-subscription": subscription,
        }
    )
    return Message(value=delivery.value, headers=headers, key=delivery.key)


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message with its failure record."""

    value: bytes
    headers: Mapping[str, str]
    error_type: str
    error_message: str
    attempts: int
    first_failure: datetime
    last_failure: datetime
    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_group: str
    subscription: str
    key: str | None = None

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        h = message.headers
        try:
            return cls(
                value=message.value,
                headers=h,
                error_type=h["tidings-error-type"],
                error_message=h.get("tidings-error-message", ""),
                attempts=int(h["tidings-attempts"]),
                first_failure=datetime.fromisoformat(h["tidings-first-failure"]),
                last_failure=datetime.fromisoformat(h["tidings-last-failure"]),
                origin_topic=h["tidings-origin-topic"],
                origin_partition=int(h["tidings-origin-partition"]),
                origin_offset=int(h["tidings-origin-offset"]),
                origin_group=h["tidings-origin-group"],
                subscription=h.get("tidings-subscription", ""),
                key=message.key,
            )
        except (KeyError, ValueError) as exc:
            raise DecodeError(f"message carries no valid dead-letter record: {exc}") from exc

    def event(self, codec: Codec | None = None) -> Event:
        """The original event (raises DecodeError for a poison message)."""
        original = {k: v for k, v in self.headers.items() if not k.startswith(_PREFIX)}
        return (codec or Codec()).decode(self.value, original)

    def original_message(self) -> Message:
        """The message as first published, for redriving to ``origin_topic``."""
        original = {k: v for k, v in self.headers.items() if not k.startswith(_PREFIX)}
        return Message(value=self.value, headers=original, key=self.key)
