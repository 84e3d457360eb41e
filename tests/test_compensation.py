"""The ``compensates`` extension: set on a follow-up, read back after a trip through a codec."""

from __future__ import annotations

from tidings import Event
from tidings.codec import Codec
from tidings.compensation import COMPENSATES, compensated_id, compensating


def test_a_derived_compensation_names_the_event_it_undoes_across_the_wire() -> None:
    placed = Event(type="OrderPlaced", source="/orders", data={"order_id": "ORD-1"})
    release = placed.derive(
        {"order_id": "ORD-1"}, type="ReleaseInventory", extensions=compensating(placed.id)
    )
    for codec in (Codec(), Codec("binary")):
        decoded = codec.decode(*codec.encode(release))
        assert compensated_id(decoded) == placed.id
        assert decoded.extensions[COMPENSATES] == placed.id
    assert compensated_id(placed) is None
    assert compensated_id(placed.replace(extensions={COMPENSATES: 3})) is None
