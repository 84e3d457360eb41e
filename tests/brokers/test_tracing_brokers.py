"""Tracing on real brokers: a two-hop flow is one trace, with the broker's messaging.system."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from _nats_server import system_url
from kafka_server import TEST_OPTIONS, Tansu, tansu  # noqa: F401 - fixture
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tidings import App, Context, Event


async def _check(url: str, system: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    orders, stock = f"orders-{uuid.uuid4().hex[:8]}", f"stock-{uuid.uuid4().hex[:8]}"
    app = App("traced", broker=url, tracer_provider=provider)
    shipped: list[Event] = []

    @app.subscribe(orders, group="inventory")
    async def reserve(ctx: Context) -> None:
        ctx.emit(ctx.event.data, topic=stock, type="InventoryReserved")

    @app.subscribe(stock, group="shipping")
    async def ship(event: Event) -> None:
        shipped.append(event)

    async with app:
        await app.publish({"order": 1}, topic=orders, type="OrderPlaced", key="o1")
        for _ in range(3000):
            if len(exporter.get_finished_spans()) >= 4:
                break
            await asyncio.sleep(0.01)
    provider.shutdown()
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert [s.name for s in spans] == [
        f"{orders} publish",
        f"{orders} process",
        f"{stock} publish",
        f"{stock} process",
    ]
    for parent, child in itertools.pairwise(spans):
        assert parent.context is not None and child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    assert spans[0].parent is None
    assert {(s.attributes or {})["messaging.system"] for s in spans} == {system}
    assert shipped[0].traceparent is not None


async def test_a_flow_on_nats_is_one_trace() -> None:
    await _check(system_url(), "nats")


async def test_a_flow_on_kafka_is_one_trace(tansu: Tansu) -> None:  # noqa: F811
    await _check(tansu.url(TEST_OPTIONS), "kafka")
