"""Upcasting: old versions of stored event data brought up to the version the code reads.

Stored events are never rewritten. When an aggregate loads an event whose
``schemaversion`` is older than its payload type's version
(:func:`tidings.event_type`), the registered functions run in a chain,
``(type, 1) -> 2 -> 3 ...``, each taking the data (decoded JSON) of one
version and returning the next version's.

>>> upcasters = Upcasters()
>>> @upcasters.register("InventoryReserved", from_version=1)
... def add_warehouse(data):
...     return {**data, "warehouse": "main"}
>>> upcasters.upcast("InventoryReserved", {"quantity": 2}, 1, 2)
{'quantity': 2, 'warehouse': 'main'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tidings.errors import ConfigurationError, SchemaError

__all__ = ["Upcaster", "Upcasters"]

#: One step: the data of version ``n`` in, the data of version ``n + 1`` out.
Upcaster = Callable[[Any], Any]
F = TypeVar("F", bound=Upcaster)


class Upcasters:
    """A registry of upcasting steps, keyed by event type and the version they start from."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, *, from_version: int) -> Callable[[F], F]:
        """Decorator registering ``function`` as the step ``from_version -> from_version + 1``."""
        if not isinstance(event_type, str) or not event_type:
            raise ConfigurationError(f"event_type must be a non-empty string, got {event_type!r}")
        if not isinstance(from_version, int) or isinstance(from_version, bool) or from_version < 1:
            raise ConfigurationError(f"from_version must be an integer >= 1, got {from_version!r}")

        def add(function: F) -> F:
            self.add(event_type, from_version, function)
            return function

        return add

    def add(self, event_type: str, from_version: int, function: Upcaster) -> None:
        """Register ``function`` as the step ``from_version -> from_version + 1``."""
        key = (event_type, from_version)
        if key in self._steps:
            raise ConfigurationError(
                f"an upcaster of {event_type!r} from version {from_version} is registered already"
            )
        if not callable(function):
            raise ConfigurationError(f"an upcaster must be callable, got {function!r}")
        self._steps[key] = function

    def upcast(self, event_type: str, data: Any, version: int, target: int) -> Any:
        """``data`` of ``version`` brought to ``target``; SchemaError if a step is missing."""
        if version > target:
            raise SchemaError(
                f"stored {event_type!r} has version {version}, newer than this code reads "
                f"({target}); deploy the code that knows it"
            )
        while version < target:
            step = self._steps.get((event_type, version))
            if step is None:
                raise SchemaError(
                    f"no upcaster of {event_type!r} from version {version} "
                    f"(the code reads version {target}); register one"
                )
            data = step(data)
            version += 1
        return data
