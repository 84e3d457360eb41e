"""One saga instance as its store keeps it: state, events handled (with what each
produced), pending timeouts; and its JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from tidings.codec import Codec
from tidings.errors import StorageError
from tidings.payload import decode_payload, json_hook
from tidings.sagas.context import Output
from tidings.sagas.store import StoredSaga

__all__ = ["Record"]

S = TypeVar("S")
_CODEC = Codec()


@dataclass
class Record(Generic[S]):
    state: S
    handled: dict[str, list[Output]] = field(default_factory=dict)
    """Event id -> the outputs its step produced (sent again, as they were, on redelivery)."""
    timeouts: dict[str, str] = field(default_factory=dict)
    """Timeout payload type name -> the id of the pending timeout event."""
    version: int = 0
    """The version it was read at (0: new), which the next save expects."""

    def encode(self) -> str:
        document = {
            "state": self.state,
            "handled": {
                event_id: [
                    {
                        "topic": o.topic,
                        "event": _CODEC.encode_structured(o.event).decode(),
                        "deliver_at": o.deliver_at,
                    }
                    for o in outputs
                ]
                for event_id, outputs in self.handled.items()
            },
            "timeouts": self.timeouts,
        }
        return msgspec.json.encode(document, enc_hook=json_hook).decode()

    @classmethod
    def decode(cls, stored: StoredSaga, state_type: type[S]) -> Record[S]:
        try:
            raw: dict[str, Any] = msgspec.json.decode(stored.document)
            handled = {
                event_id: [
                    Output(
                        o["topic"], _CODEC.decode_structured(o["event"].encode()), o["deliver_at"]
                    )
                    for o in outputs
                ]
                for event_id, outputs in raw["handled"].items()
            }
            state = decode_payload(raw["state"], state_type)
            return cls(state, handled, dict(raw["timeouts"]), stored.version)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"a stored saga document cannot be read: {exc}") from exc
