"""Upcasting: functions that lift an event type's data from one version to the next.

A consumer whose payload class declares version 3 (``__event_version__``, or
``@event_type(version=3)``) can still receive events written as version 1 or 2,
including those replayed from storage: :class:`Upcasters` lifts their data one
step at a time before the handler sees it, and the event's ``schemaversion``
says the version it now has.

>>> upcasters = Upcasters()
>>> @upcasters.register("OrderPlaced", from_version=1)
... def split_name(data):
...     first, _, last = data.pop("name").partition(" ")
...     return {**data, "first_name": first, "last_name": last}
>>> upcasters.lift("OrderPlaced", {"name": "Ada Lovelace"}, 1, 2)
{'first_name': 'Ada', 'last_name': 'Lovelace'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tidings.errors import ConfigurationError, SchemaError

__all__ = ["Upcaster", "Upcasters"]

#: Takes the data of version n (a dict, as decoded from JSON) and returns version n+1's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
U = TypeVar("U", bound=Upcaster)


class Upcasters:
    """The upcasting steps of every event type: ``(type, n) -> step to n + 1``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._types: set[str] = set()

    def register(self, event_type: str, *, from_version: int) -> Callable[[U], U]:
        """Decorator: the function lifts ``event_type``'s data from ``from_version`` to the next."""
        if not isinstance(from_version, int) or isinstance(from_version, bool) or from_version < 1:
            raise ConfigurationError(f"from_version must be an integer >= 1, got {from_version!r}")

        def add(step: U) -> U:
            self.add(event_type, from_version, step)
            return step

        return add

    def add(self, event_type: str, from_version: int, step: Upcaster) -> None:
        """Register ``step`` as the lift of ``event_type`` from ``from_version``."""
        key = (event_type, from_version)
        if key in self._steps:
            raise ConfigurationError(
                f"an upcaster of {event_type!r} from version {from_version} is registered already"
            )
        self._steps[key] = step
        self._types.add(event_type)

    def knows(self, event_type: str) -> bool:
        """Whether any step of ``event_type`` is registered."""
        return event_type in self._types

    def can_lift(self, event_type: str, from_version: int, to_version: int) -> bool:
        """Whether every step from ``from_version`` up to ``to_version`` is registered."""
        return all((event_type, v) in self._steps for v in range(from_version, to_version))

    def lift(
        self, event_type: str, data: dict[str, Any], from_version: int, to_version: int
    ) -> dict[str, Any]:
        """``data`` of ``from_version`` lifted to ``to_version``, step by step.

        Raises SchemaError naming the missing step, or the step that failed.
        """
        for version in range(from_version, to_version):
            step = self._steps.get((event_type, version))
            if step is None:
                raise SchemaError(
                    f"no upcaster lifts {event_type} from version {version} to {version + 1} "
                    f"(the event is version {from_version}, the code reads {to_version}): "
                    "register one"
                )
            try:
                data = step(dict(data))
            except Exception as exc:
                raise SchemaError(
                    f"upcasting {event_type} from version {version} to {version + 1} failed: "
                    f"{exc!r}"
                ) from exc
            if not isinstance(data, dict):
                raise SchemaError(
                    f"the upcaster of {event_type} from version {version} returned "
                    f"{type(data).__name__}, not a dict"
                )
        return data

    def upcast(self, event_type: str, data: Any, version: int, target: int) -> Any:
        """``data`` of ``version`` brought to ``target`` (unchanged when equal); SchemaError
        for a version newer than ``target`` or a missing step. For stored events an
        aggregate loads: every step of the way must be registered."""
        if version > target:
            raise SchemaError(
                f"stored {event_type!r} has version {version}, newer than this code reads "
                f"({target}); deploy the code that knows it"
            )
        if version == target:
            return data
        if not isinstance(data, dict):
            raise SchemaError(f"{event_type} data of version {version} is not an object")
        return self.lift(event_type, data, version, target)

    def __len__(self) -> int:
        return len(self._steps)
