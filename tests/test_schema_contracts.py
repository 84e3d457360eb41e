"""Schemas an App keeps to: validation on publish and consume, dataschema, upcasting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tidings import App
from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.deadletter import DeadLetter, dead_letter_topic
from tidings.errors import SchemaError
from tidings.payload import event_type
from tidings.schemas import (
    SchemaCompatibilityError,
    Schemas,
    SchemaViolation,
    StoredRegistry,
    Upcasters,
    dataschema_uri,
    schema_for,
)


@event_type("OrderPlaced")
class OrderPlaced(BaseModel):
    order_id: str
    total: float


@event_type("OrderPlaced", version=2)
class OrderPlacedV2(BaseModel):
    order_id: str
    total_cents: int
    currency: str


@event_type("OrderPlaced")
@dataclass
class LooseOrder:
    order_id: Any
    total: Any


def _broker() -> MemoryBroker:
    return MemoryBroker(MemoryHub())


async def _register(broker: MemoryBroker, *classes: type) -> StoredRegistry:
    registry = StoredRegistry(broker.schema_store())
    for cls in classes:
        await registry.register("OrderPlaced", schema_for(cls))
    return registry


async def test_an_app_without_registered_schemas_installs_nothing() -> None:
    app = App("plain", broker=_broker())
    async with app:
        await app.publish(OrderPlaced(order_id="o1", total=3.0), topic="orders")
        assert app._enforcement is None


async def test_a_published_event_names_the_registered_version_it_conforms_to() -> None:
    broker = _broker()
    await _register(broker, OrderPlaced)
    app = App("shop", broker=broker)
    seen: list[Any] = []

    @app.subscribe("orders", group="g")
    async def handle(order: OrderPlaced) -> None:
        seen.append(order)

    async with app:
        await app.publish(OrderPlaced(order_id="o1", total=3.0), topic="orders")
        await app.publish({"order_id": "o2", "total": 4}, topic="orders", type="OrderPlaced")
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    stored = [e for p in broker.hub.topic("orders").partitions for e in p]
    assert len(stored) == 2
    codec = app.codec
    schemas = {codec.decode(r.message.value, r.message.headers).dataschema for r in stored}
    assert schemas == {dataschema_uri("OrderPlaced", 1)}
    assert sorted(o.order_id for o in seen) == ["o1", "o2"]


async def test_data_that_breaks_the_registered_schema_is_refused_naming_the_field() -> None:
    broker = _broker()
    await _register(broker, OrderPlaced)
    app = App("shop", broker=broker)
    async with app:
        with pytest.raises(SchemaViolation, match=r"total: .*number") as refused:
            await app.publish(
                {"order_id": "o3", "total": "lots"}, topic="orders", type="OrderPlaced"
            )
        assert refused.value.problems[0][0] == "total"
        with pytest.raises(SchemaError, match=r"\(root\): .*order_id"):
            await app.publish({"total": 1}, topic="orders", type="OrderPlaced")
        # A class whose schema is not the registered one is checked by its data.
        with pytest.raises(SchemaViolation, match="order_id"):
            await app.publish(LooseOrder(order_id=7, total=1.0), topic="orders")
        await app.publish(LooseOrder(order_id="o4", total=1.0), topic="orders")
    assert sum(len(p) for p in broker.hub.topic("orders").partitions) == 1  # nothing refused sent


async def test_validation_can_be_switched_off() -> None:
    broker = _broker()
    await _register(broker, OrderPlaced)
    app = App("shop", broker=broker, schemas=Schemas(validate_publish=False))
    async with app:
        await app.publish({"order_id": "o3", "total": "lots"}, topic="orders", type="OrderPlaced")
    off = App("shop", broker=broker, schemas=False)
    async with off:
        await off.publish({"order_id": "o3", "total": "lots"}, topic="orders", type="OrderPlaced")
        assert off._enforcement is None
    assert sum(len(p) for p in broker.hub.topic("orders").partitions) == 2


async def test_a_received_event_failing_its_declared_schema_is_dead_lettered_with_the_report() -> (
    None
):
    broker = _broker()
    await _register(broker, OrderPlaced)
    producer = App("careless", broker=broker, schemas=False)
    consumer = App("billing", broker=broker)
    handled: list[Any] = []

    @consumer.subscribe("orders", group="billing")
    async def bill(order: dict[str, Any]) -> None:
        handled.append(order)

    async with consumer, producer:
        await producer.publish(
            {"order_id": "o9", "total": "lots"},
            topic="orders",
            type="OrderPlaced",
            dataschema=dataschema_uri("OrderPlaced", 1),
        )
        await producer.publish(
            {"order_id": "o10", "total": 2.5}, topic="orders", type="OrderPlaced"
        )
        dlq = dead_letter_topic("orders")
        for _ in range(200):
            if handled and sum(len(p) for p in broker.hub.topic(dlq).partitions):
                break
            await asyncio.sleep(0.01)
    assert [h["order_id"] for h in handled] == ["o10"]
    [record] = [
        DeadLetter.from_message(r.message) for p in broker.hub.topic(dlq).partitions for r in p
    ]
    assert record.attempts == 1
    assert record.error_type.endswith("SchemaViolation")
    assert "total:" in record.error_message and "number" in record.error_message


async def test_old_versions_reach_a_newer_handler_upcast_even_when_replayed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    old = App("old-shop", broker=url)
    async with old:
        for i in range(3):
            await old.publish(OrderPlaced(order_id=f"o{i}", total=i + 0.5), topic="orders")

    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", from_version=1)
    def to_cents(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "order_id": data["order_id"],
            "total_cents": round(data.pop("total") * 100),
            "currency": "EUR",
        }

    new = App("new-shop", broker=url, schemas=Schemas(upcasters=upcasters))
    seen: list[OrderPlacedV2] = []

    @new.subscribe("orders", group="from-history", start="earliest")
    async def handle(order: OrderPlacedV2) -> None:
        seen.append(order)

    async with new:
        await new.publish(
            OrderPlacedV2(order_id="o3", total_cents=700, currency="USD"), topic="orders"
        )
        for _ in range(300):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.01)
    assert sorted((o.order_id, o.total_cents, o.currency) for o in seen) == [
        ("o0", 50, "EUR"),
        ("o1", 150, "EUR"),
        ("o2", 250, "EUR"),
        ("o3", 700, "USD"),
    ]


async def test_a_missing_upcasting_step_dead_letters_with_a_clear_reason() -> None:
    broker = _broker()
    upcasters = Upcasters()
    upcasters.add("OrderPlaced", 2, lambda data: data)  # 2 -> 3 only: 1 -> 2 is missing
    producer = App("old", broker=broker, schemas=False)
    consumer = App("new", broker=broker, schemas=Schemas(upcasters=upcasters))

    @event_type("OrderPlaced", version=3)
    class OrderPlacedV3(BaseModel):
        order_id: str

    handled: list[Any] = []

    @consumer.subscribe("orders", group="g")
    async def handle(order: OrderPlacedV3) -> None:
        handled.append(order)

    async with consumer, producer:
        await producer.publish(OrderPlaced(order_id="o1", total=1.0), topic="orders")
        dlq = dead_letter_topic("orders")
        for _ in range(200):
            if sum(len(p) for p in broker.hub.topic(dlq).partitions):
                break
            await asyncio.sleep(0.01)
    [record] = [
        DeadLetter.from_message(r.message) for p in broker.hub.topic(dlq).partitions for r in p
    ]
    assert "no upcaster lifts OrderPlaced from version 1 to 2" in record.error_message
    assert not handled


async def test_register_on_connect_refuses_an_incompatible_payload() -> None:
    broker = _broker()
    await _register(broker, OrderPlaced)
    app = App("shop", broker=broker, schemas=Schemas(register=True))

    @app.subscribe("orders", group="g")
    async def handle(order: OrderPlacedV2) -> None:  # a breaking change of OrderPlaced
        pass

    with pytest.raises(SchemaCompatibilityError, match="total"):
        await app.start()
    await app.stop()


async def test_register_on_connect_registers_the_apps_payloads() -> None:
    broker = _broker()
    app = App("shop", broker=broker, schemas=Schemas(register=True))
    app.route(OrderPlaced, "orders")
    async with app:
        await app.publish(OrderPlaced(order_id="o1", total=1.0))
    registry = StoredRegistry(broker.schema_store())
    assert await registry.versions("OrderPlaced") == [1]
