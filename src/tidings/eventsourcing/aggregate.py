"""Aggregates: plain classes whose state is folded from their events.

A command method checks the rules against the current state and calls
:meth:`Aggregate.emit` with a payload (pydantic model, dataclass or msgspec
Struct); ``emit`` applies it at once and keeps the event until the
repository saves it. Loading replays the stored events through the same
small ``apply`` methods, marked with :func:`applies`.

``__init__(self, id)`` must set the state of an aggregate with no history:
the repository builds one that way before replaying.

>>> import dataclasses
>>> @dataclasses.dataclass
... class Reserved:
...     quantity: int
>>> class Inventory(Aggregate):
...     def __init__(self, id: str) -> None:
...         super().__init__(id)
...         self.reserved = 0
...     def reserve(self, quantity: int) -> None:
...         self.emit(Reserved(quantity))
...     @applies(Reserved)
...     def _reserved(self, event: Reserved) -> None:
...         self.reserved += event.quantity
>>> item = Inventory("sku-1")
>>> item.reserve(2)
>>> item.reserved, item.version, [e.type for e in item.pending_events]
(2, 1, ['Reserved'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec

from tidings.errors import ConfigurationError, SchemaError
from tidings.event import Event
from tidings.eventsourcing.store import StoredEvent
from tidings.eventsourcing.upcasting import Upcasters
from tidings.payload import decode_payload, json_hook, payload_info

__all__ = ["Aggregate", "applies"]

F = TypeVar("F", bound=Callable[..., None])
_MARK = "__tidings_applies__"
_encoder = msgspec.json.Encoder(enc_hook=json_hook)
_decoder = msgspec.json.Decoder()
_NO_UPCASTERS = Upcasters()


def applies(payload_type: type[Any]) -> Callable[[F], F]:
    """Mark a method as the one that folds events of ``payload_type`` into the state."""
    payload_info(payload_type)  # fails early for a type that names no event type

    def mark(method: F) -> F:
        setattr(method, _MARK, payload_type)
        return method

    return mark


class Aggregate:
    """Base of aggregates: an id, a version, and the events not saved yet.

    Subclasses set ``source`` (the CloudEvents source of what they emit) and
    may override :meth:`snapshot_state`/:meth:`restore_state` when their state
    is not plain JSON values; raise ``snapshot_version`` when its shape changes
    (older snapshots are then ignored and the history replayed).
    """

    source: ClassVar[str] = "/aggregates"
    snapshot_version: ClassVar[int] = 1
    #: Event type name -> (payload type, its version, name of the apply method).
    appliers: ClassVar[dict[str, tuple[type[Any], int, str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        appliers = dict(cls.appliers)  # inherited ones, overridden below
        for name, value in cls.__dict__.items():
            payload_type = getattr(value, _MARK, None)
            if payload_type is not None:
                info = payload_info(payload_type)
                appliers[info.name] = (payload_type, info.version, name)
        cls.appliers = appliers

    def __init__(self, id: str) -> None:
        if not isinstance(id, str) or not id:
            raise ConfigurationError(f"an aggregate id is a non-empty string, got {id!r}")
        self.id = id
        #: The version of the last event applied (stored or pending); 0 for a new one.
        self.version = 0
        self._pending: list[Event] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} v{self.version}>"

    # -- commands ---------------------------------------------------------------

    def emit(self, payload: Any, *, caused_by: Event | None = None) -> Event:
        """Apply ``payload`` to the state and keep it as a pending event.

        ``caused_by``: the event that led to this command (a handler's input):
        the new event carries its correlation id, causation id and trace.
        """
        info = payload_info(payload)
        entry = self.appliers.get(info.name)
        if entry is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no @applies({type(payload).__name__}) method"
            )
        if caused_by is None:
            event = Event(
                type=info.name,
                source=self.source,
                data=payload,
                subject=self.id,
                schemaversion=info.version,
            )
        else:
            event = caused_by.derive(
                payload,
                type=info.name,
                source=self.source,
                subject=self.id,
                schemaversion=info.version,
            )
        getattr(self, entry[2])(payload)
        self.version += 1
        self._pending.append(event)
        return event

    @property
    def pending_events(self) -> list[Event]:
        """Events emitted since the aggregate was loaded or last saved."""
        return list(self._pending)

    def mark_saved(self) -> None:
        """The pending events are stored: forget them (the repository calls this)."""
        self._pending.clear()

    # -- loading ------------------------------------------------------------------

    def replay(self, events: Sequence[StoredEvent], upcasters: Upcasters | None = None) -> None:
        """Fold stored events (in version order) into the state."""
        appliers = self.appliers
        upcasters = upcasters or _NO_UPCASTERS
        for stored in events:
            event = stored.event
            entry = appliers.get(event.type)
            if entry is None:
                raise SchemaError(
                    f"{type(self).__name__} has no apply method for event type {event.type!r} "
                    f"(stream {stored.stream_id!r}, version {stored.version})"
                )
            payload_type, version, method = entry
            data = event.data
            stored_version = event.schemaversion or 1
            if stored_version != version:
                data = upcasters.upcast(event.type, data, stored_version, version)
            getattr(self, method)(decode_payload(data, payload_type))
            self.version = stored.version

    # -- snapshots ------------------------------------------------------------------

    @classmethod
    def snapshot_type(cls) -> str:
        """Names the encoding of this class's snapshots (class name and snapshot_version)."""
        return f"{cls.__qualname__}/v{cls.snapshot_version}"

    def snapshot_state(self) -> bytes:
        """The state as bytes: by default the public attributes as JSON."""
        state = {
            name: value
            for name, value in vars(self).items()
            if not name.startswith("_") and name not in ("id", "version")
        }
        return _encoder.encode(state)

    def restore_state(self, state: bytes) -> None:
        """Set the state from :meth:`snapshot_state`'s bytes."""
        values = _decoder.decode(state)
        if not isinstance(values, dict):
            raise SchemaError(f"a {type(self).__name__} snapshot is not a JSON object")
        vars(self).update(values)
