"""Upcasting: old versions of stored event data brought up to the version the code reads.

Stored events are never rewritten. When an aggregate loads an event whose
``schemaversion`` is older than its payload type's version
(:func:`tidings.event_type`), the registered functions run in a chain,
``(type, 1) -> 2 -> 3 ...``, each taking the data (decoded JSON) of one
version and returning the next version's. These are the same
:class:`~tidings.schemas.Upcasters` a consuming App takes
(``App(schemas=Schemas(upcasters=...))``): one registry serves both.

>>> upcasters = Upcasters()
>>> @upcasters.register("InventoryReserved", from_version=1)
... def add_warehouse(data):
...     return {**data, "warehouse": "main"}
>>> upcasters.upcast("InventoryReserved", {"quantity": 2}, 1, 2)
{'quantity': 2, 'warehouse': 'main'}
"""

from __future__ import annotations

from tidings.schemas.upcast import Upcaster, Upcasters

__all__ = ["Upcaster", "Upcasters"]
