"""tidings.testing.contracts: consumer and producer contract checks against a registry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tidings import App
from tidings.payload import event_type
from tidings.schemas import StoredRegistry, Upcasters, memory_registry, schema_for
from tidings.testing.contracts import assert_consumers_accept, assert_producers_conform


@event_type("OrderPlaced")
class V1(BaseModel):
    order_id: str
    total: float


@event_type("OrderPlaced", version=2)
class V2(BaseModel):
    order_id: str
    total_cents: int


@event_type("OrderPlaced", version=2)
class V2Renamed(BaseModel):
    id: str
    total_cents: int


async def _registry() -> StoredRegistry:
    registry = memory_registry()
    await registry.register("OrderPlaced", schema_for(V1))
    await registry.register("OrderPlaced", schema_for(V2), mode="NONE")
    return registry


def _consumer(cls: type) -> App:
    app = App("billing", broker="memory://")

    async def bill(order: Any) -> None:
        pass

    bill.__annotations__["order"] = cls
    app.subscribe("orders", group="billing")(bill)
    return app


def _upcasters() -> Upcasters:
    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", from_version=1)
    def to_cents(data: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": data["order_id"], "total_cents": round(data["total"] * 100)}

    return upcasters


async def test_a_consumer_of_v2_reads_v1_through_its_upcasters() -> None:
    await assert_consumers_accept(_consumer(V2), await _registry(), upcasters=_upcasters())


async def test_a_consumer_of_v2_without_upcasters_is_told_which_version_and_field() -> None:
    with pytest.raises(AssertionError, match=r"OrderPlaced v1 and no upcaster chain.*total"):
        await assert_consumers_accept(_consumer(V2), await _registry())


async def test_a_consumer_still_on_v1_cannot_read_v2() -> None:
    with pytest.raises(AssertionError, match=r"cannot read OrderPlaced v2: .*total"):
        await assert_consumers_accept(_consumer(V1), await _registry())


async def test_a_producer_of_a_registered_version_conforms() -> None:
    app = App("shop", broker="memory://")
    app.route(V2, "orders")
    await assert_producers_conform(app, await _registry())


async def test_a_producer_of_an_unregistered_breaking_change_does_not() -> None:
    app = App("shop", broker="memory://")
    app.route(V2Renamed, "orders")
    with pytest.raises(AssertionError, match=r"not readable by the latest.*order_id"):
        await assert_producers_conform(app, await _registry())


async def test_a_producer_of_an_unknown_type_is_reported() -> None:
    @event_type("Refunded")
    class Refunded(BaseModel):
        order_id: str

    app = App("shop", broker="memory://")
    app.route(Refunded, "refunds")
    with pytest.raises(AssertionError, match=r"Refunded .* has no registered schema"):
        await assert_producers_conform(app, await _registry())
