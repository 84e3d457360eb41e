from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from tidings import (
    App,
    ConfigurationError,
    Context,
    Event,
    EventTooLargeError,
    Outgoing,
    Reject,
    Retry,
    RetryPolicy,
    UnroutableError,
    event_type,
    exact,
)
from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.codec import Codec
from tidings.middleware import Handle, PublishFn
from tidings.testing import Harness

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.02)


class OrderPlaced(BaseModel):
    order_id: str
    sku: str = "ABC"
    quantity: int = 1


class InventoryReserved(BaseModel):
    order_id: str


@event_type("shop.order.cancelled", version=2)
class OrderCancelled(BaseModel):
    order_id: str


@dataclass
class Shipped:
    order_id: str
    carrier: str


def shop(name: str = "shop") -> App:
    app = App(name, broker="memory://")
    app.route(OrderPlaced, "order.events")
    app.route(OrderCancelled, "order.events")
    app.route(InventoryReserved, "inventory.events")
    app.route(Shipped, "shipping.events")
    return app


async def test_publish_returns_the_stored_event() -> None:
    app = shop()
    async with Harness(app) as harness:
        event = await app.publish(OrderPlaced(order_id="ORD-1"), key="ORD-1")
        assert event.type == "OrderPlaced"
        assert event.source == "/shop"
        assert event.partitionkey == "ORD-1"
        assert event.schemaversion == 1
        ((_, _, message),) = harness.hub.records("order.events")
        assert message.key == "ORD-1"
        assert app.codec.decode(message.value, message.headers) == event.replace(
            data={"order_id": "ORD-1", "sku": "ABC", "quantity": 1}
        )


async def test_event_type_decorator_sets_type_and_version() -> None:
    app = shop()
    async with Harness(app):
        event = await app.publish(OrderCancelled(order_id="1"))
    assert (event.type, event.schemaversion) == ("shop.order.cancelled", 2)


async def test_handler_receives_typed_payload_event_and_context() -> None:
    app = shop()
    seen: list[tuple[OrderPlaced, str, int, str]] = []

    @app.subscribe("order.events", group="inventory")
    async def reserve(order: OrderPlaced, event: Event, ctx: Context) -> None:
        seen.append((order, event.id, ctx.attempt, ctx.group))

    async with Harness(app) as harness:
        published = await app.publish(OrderPlaced(order_id="ORD-1", quantity=2))
        await harness.drain()
    assert seen == [(OrderPlaced(order_id="ORD-1", quantity=2), published.id, 1, "inventory")]


async def test_dataclass_and_dict_payloads() -> None:
    app = shop()
    got: list[Any] = []

    @app.subscribe("shipping.events")
    async def typed(shipped: Shipped) -> None:
        got.append(shipped)

    @app.subscribe("shipping.events")
    async def untyped(data: dict[str, Any]) -> None:
        got.append(data)

    async with Harness(app) as harness:
        await app.publish(Shipped("ORD-1", "dhl"))
        await app.publish({"order_id": "ORD-2", "carrier": "ups"}, type="Shipped")
        await harness.drain()
    assert Shipped("ORD-1", "dhl") in got
    assert Shipped("ORD-2", "ups") in got
    assert {"order_id": "ORD-1", "carrier": "dhl"} in got
    assert len(got) == 4


async def test_returned_payload_is_published_as_follow_up_with_causation() -> None:
    app = shop()

    @app.subscribe("order.events", group="inventory")
    async def reserve(order: OrderPlaced) -> InventoryReserved:
        return InventoryReserved(order_id=order.order_id)

    async with Harness(app) as harness:
        root = await app.publish(OrderPlaced(order_id="ORD-1"))
        await harness.drain()
        (follow_up,) = harness.published(type="InventoryReserved", topic="inventory.events")
    assert follow_up.causationid == root.id
    assert follow_up.correlationid == root.id
    assert follow_up.data == {"order_id": "ORD-1"}


async def test_emit_and_list_returns_publish_several_follow_ups_in_one_chain() -> None:
    app = shop()

    @app.subscribe("order.events", group="inventory")
    async def reserve(order: OrderPlaced, ctx: Context) -> list[Any]:
        ctx.emit(Shipped(order.order_id, "dhl"), subject=order.order_id)
        return [InventoryReserved(order_id=order.order_id), None]

    @app.subscribe("inventory.events", group="next")
    async def next_step(reserved: InventoryReserved) -> Shipped:
        return Shipped(reserved.order_id, "ups")

    async with Harness(app) as harness:
        root = await app.publish(OrderPlaced(order_id="ORD-9"))
        await harness.drain()
        shipped = harness.published(type="Shipped")
    assert len(shipped) == 2
    assert {e.correlationid for e in shipped} == {root.id}
    assert any(e.subject == "ORD-9" for e in shipped)


async def test_handler_with_payload_type_skips_other_event_types() -> None:
    app = shop()
    got: list[str] = []

    @app.subscribe("order.events")
    async def placed(order: OrderPlaced) -> None:
        got.append(order.order_id)

    async with Harness(app) as harness:
        await app.publish(OrderCancelled(order_id="X"))
        await app.publish(OrderPlaced(order_id="Y"))
        await harness.drain()
    assert got == ["Y"]
    assert app.stats()["shop.placed"].skipped == 1


async def test_union_payload_annotation_decodes_by_event_type() -> None:
    app = shop()
    got: list[Any] = []

    @app.subscribe("order.events")
    async def either(change: OrderPlaced | OrderCancelled) -> None:
        got.append(change)

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"), key="k")
        await app.publish(OrderCancelled(order_id="1"), key="k")
        await harness.drain()
    assert got == [OrderPlaced(order_id="1"), OrderCancelled(order_id="1")]


async def test_subscription_filter() -> None:
    app = shop()
    got: list[str] = []

    @app.subscribe("order.events", filter=exact(subject="vip"))
    async def vip(data: dict[str, Any]) -> None:
        got.append(data["order_id"])

    @app.subscribe("order.events", filter={"not": {"exact": {"subject": "vip"}}})
    async def others(data: dict[str, Any]) -> None:
        got.append("other-" + data["order_id"])

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"), subject="vip")
        await app.publish(OrderPlaced(order_id="2"), subject="regular")
        await harness.drain()
    assert sorted(got) == ["1", "other-2"]


async def test_sync_handler_runs_in_a_thread() -> None:
    app = shop()
    import threading

    threads: list[str] = []

    @app.subscribe("order.events")
    def blocking(order: OrderPlaced) -> InventoryReserved:
        threads.append(threading.current_thread().name)
        time.sleep(0.01)
        return InventoryReserved(order_id=order.order_id)

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        assert harness.published(type="InventoryReserved")
    assert threads and threads[0] != threading.main_thread().name


async def test_unroutable_payload_raises_typed_error() -> None:
    app = App("x", broker="memory://")
    with pytest.raises(UnroutableError, match=r"app\.route"):
        await app.publish(OrderPlaced(order_id="1"))
    with pytest.raises(ConfigurationError, match="type="):
        await app.publish({"a": 1}, topic="t")
    await app.stop()


async def test_event_over_size_limit_is_refused_at_publish_and_nothing_stored() -> None:
    app = App("big", broker="memory://", max_event_size=1000)
    async with Harness(app) as harness:
        with pytest.raises(EventTooLargeError) as info:
            await app.publish({"blob": "x" * 2000}, topic="t", type="Blob")
        assert info.value.limit == 1000
        with pytest.raises(EventTooLargeError):
            await app.publish_batch(
                [app.event({"a": 1}, type="Small"), app.event({"b": "y" * 5000}, type="Big")],
                topic="t",
            )
        assert harness.hub.records("t") == []


async def test_default_size_limit_is_one_mebibyte() -> None:
    app = App("big", broker="memory://")
    async with Harness(app):
        await app.publish({"blob": "x" * 1_000_000}, topic="t", type="Blob")
        with pytest.raises(EventTooLargeError):
            await app.publish({"blob": "x" * 1_050_000}, topic="t", type="Blob")


async def test_publish_batch_keeps_order_and_routes_each() -> None:
    app = shop()
    async with Harness(app) as harness:
        events = await app.publish_batch(
            [OrderPlaced(order_id=str(i)) for i in range(5)] + [InventoryReserved(order_id="r")]
        )
        assert [e.type for e in events] == ["OrderPlaced"] * 5 + ["InventoryReserved"]
        assert len(harness.hub.records("order.events")) == 5
        assert len(harness.hub.records("inventory.events")) == 1


async def test_delayed_publish_is_not_delivered_early() -> None:
    app = shop()
    handled_at: list[float] = []

    @app.subscribe("order.events")
    async def late(order: OrderPlaced) -> None:
        handled_at.append(time.time())

    async with Harness(app) as harness:
        sent = time.time()
        await app.publish(OrderPlaced(order_id="1"), delay=0.3)
        await harness.drain()
    assert handled_at and handled_at[0] >= sent + 0.29


# -- retries, dead letters -------------------------------------------------------------


async def test_transient_failure_is_retried_then_succeeds() -> None:
    app = shop()
    attempts: list[int] = []

    @app.subscribe("order.events", retry=FAST)
    async def flaky(order: OrderPlaced, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("temporary")

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        assert harness.dead_letters("order.events") == []
    assert attempts == [1, 2, 3]
    stats = app.stats()["shop.flaky"]
    assert (stats.handled, stats.failed, stats.retried) == (1, 2, 2)


async def test_exhausted_retries_dead_letter_with_failure_record() -> None:
    app = shop()

    @app.subscribe("order.events", group="inventory", retry=FAST)
    async def broken(order: OrderPlaced) -> None:
        raise ValueError(f"cannot reserve {order.order_id}")

    async with Harness(app) as harness:
        event = await app.publish(OrderPlaced(order_id="1"), key="1")
        await harness.drain()
        (letter,) = harness.dead_letters("order.events")
    assert letter.attempts == 5
    assert letter.error_type == "builtins.ValueError"
    assert letter.error_message == "cannot reserve 1"
    assert letter.origin_topic == "order.events"
    assert letter.origin_group == "inventory"
    assert letter.origin_offset == 0
    assert letter.first_failure < letter.last_failure
    assert letter.event().id == event.id
    assert letter.event().data == {"order_id": "1", "sku": "ABC", "quantity": 1}
    assert letter.key == "1"


async def test_decode_error_goes_straight_to_dlq() -> None:
    app = shop()
    handled: list[Any] = []

    @app.subscribe("order.events", retry=FAST)
    async def handler(data: dict[str, Any]) -> None:
        handled.append(data)

    async with Harness(app) as harness:
        await app.broker.publish(
            "order.events", [__import__("tidings").Message(b"\x00not json", key="p")]
        )
        await app.publish(OrderPlaced(order_id="fine"))
        await harness.drain()
        (letter,) = harness.dead_letters("order.events")
    assert letter.attempts == 1
    assert letter.error_type == "tidings.errors.DecodeError"
    assert letter.value == b"\x00not json"
    assert [d["order_id"] for d in handled] == ["fine"]


async def test_schema_mismatch_and_reject_are_not_retried() -> None:
    app = shop()
    calls: list[str] = []

    @app.subscribe("order.events", retry=FAST)
    async def strict(order: OrderPlaced) -> None:
        calls.append(order.order_id)
        raise Reject("never")

    async with Harness(app) as harness:
        await app.publish({"order_id": 5}, type="OrderPlaced")  # wrong type of field
        await app.publish(OrderPlaced(order_id="2"))
        await harness.drain()
        letters = harness.dead_letters("order.events")
    assert calls == ["2"]
    assert sorted(x.error_type for x in letters) == [
        "tidings.errors.Reject",
        "tidings.errors.SchemaError",
    ]
    assert all(x.attempts == 1 for x in letters)


async def test_explicit_retry_delay_is_honoured() -> None:
    app = shop()
    times: list[float] = []

    @app.subscribe("order.events")
    async def later(order: OrderPlaced, ctx: Context) -> None:
        times.append(time.monotonic())
        if ctx.attempt == 1:
            raise Retry(delay=0.3)

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
    assert len(times) == 2
    assert times[1] - times[0] >= 0.29


async def test_dead_letter_on_rule() -> None:
    app = shop()
    calls: list[int] = []

    @app.subscribe("order.events", retry=RetryPolicy(dead_letter_on=(KeyError,)))
    async def handler(order: OrderPlaced, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise KeyError("missing")

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        assert len(harness.dead_letters("order.events")) == 1
    assert calls == [1]


async def test_retry_holds_back_only_later_events_of_the_same_key() -> None:
    app = shop()
    log: list[str] = []

    @app.subscribe("order.events", retry=RetryPolicy(initial_delay=0.3, jitter="none"))
    async def handler(order: OrderPlaced, ctx: Context) -> None:
        log.append(f"{order.order_id}#{ctx.attempt}")
        if order.order_id == "a1" and ctx.attempt == 1:
            raise RuntimeError("retry me")

    async with Harness(app, partitions=1) as harness:
        await app.publish(OrderPlaced(order_id="a1"), key="a")
        await app.publish(OrderPlaced(order_id="a2"), key="a")
        await app.publish(OrderPlaced(order_id="b1"), key="b")
        await asyncio.sleep(0.15)
        assert log == ["a1#1", "b1#1"], "b must flow while a waits; a2 must wait behind a1"
        await harness.drain()
    assert log == ["a1#1", "b1#1", "a1#2", "a2#1"]


async def test_ordering_none_lets_later_events_overtake_a_retry() -> None:
    app = shop()
    log: list[str] = []

    @app.subscribe(
        "order.events", ordering="none", retry=RetryPolicy(initial_delay=0.2, jitter="none")
    )
    async def handler(order: OrderPlaced, ctx: Context) -> None:
        log.append(order.order_id)
        if order.order_id == "a1" and ctx.attempt == 1:
            raise RuntimeError("retry me")

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="a1"), key="a")
        await app.publish(OrderPlaced(order_id="a2"), key="a")
        await harness.drain()
    assert log == ["a1", "a2", "a1"]


# -- delivery guarantees --------------------------------------------------------------


async def test_at_most_once_never_retries() -> None:
    app = shop()
    calls: list[int] = []

    @app.subscribe("order.events", delivery="at_most_once")
    async def once(order: OrderPlaced, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("lost")

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        assert harness.dead_letters("order.events") == []
    assert calls == [1]
    assert app.stats()["shop.once"].failed == 1


async def test_at_most_once_acks_before_the_handler_runs() -> None:
    hub = MemoryHub()
    app = App("amo", broker=MemoryBroker(hub))
    started = asyncio.Event()

    @app.subscribe("t", delivery="at_most_once")
    async def slow(data: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(10)

    await app.start()
    await app.publish({"a": 1}, topic="t", type="T")
    await asyncio.wait_for(started.wait(), 2)
    assert hub.is_idle(), "at-most-once must ack before handling"
    await app.stop(timeout=0.05)


async def test_exactly_once_commits_follow_ups_once_per_event_identity() -> None:
    app = shop()
    calls: list[str] = []

    @app.subscribe("order.events", group="inventory", delivery="exactly_once")
    async def reserve(order: OrderPlaced) -> InventoryReserved:
        calls.append(order.order_id)
        return InventoryReserved(order_id=order.order_id)

    async with Harness(app) as harness:
        event = await app.publish(OrderPlaced(order_id="1"))
        await app.publish(event)  # the same (source, id) again: a duplicate
        await harness.drain()
        reserved = harness.hub.records("inventory.events")
        (follow_up,) = harness.published(type="InventoryReserved")
    # The handler may run for the duplicate; its effects (follow-ups) commit only once.
    assert calls == ["1", "1"]
    assert len(reserved) == 1
    assert follow_up.causationid == event.id


async def test_exactly_once_failure_dead_letters_atomically() -> None:
    app = shop()

    @app.subscribe("order.events", delivery="exactly_once", retry=FAST)
    async def reserve(order: OrderPlaced) -> None:
        raise RuntimeError("no")

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        assert len(harness.dead_letters("order.events")) == 1


async def test_exactly_once_is_refused_on_a_broker_without_transactions() -> None:
    broker = MemoryBroker()
    broker.capabilities = dataclasses.replace(broker.capabilities, exactly_once=False)
    app = App("x", broker=broker)
    with pytest.raises(ConfigurationError, match="exactly_once"):

        @app.subscribe("t", delivery="exactly_once")
        async def handler(data: dict[str, Any]) -> None: ...


# -- batches, concurrency, backpressure -------------------------------------------------


async def test_batch_handler_gets_lists_and_acks_together() -> None:
    app = shop()
    batches: list[list[str]] = []

    @app.subscribe("order.events", batch_size=10, batch_timeout=0.05)
    async def many(orders: list[OrderPlaced], ctx: Context) -> None:
        assert len(ctx.events) == len(orders)
        batches.append([o.order_id for o in orders])

    async with Harness(app, partitions=1) as harness:
        await app.publish_batch([OrderPlaced(order_id=str(i)) for i in range(25)])
        await harness.drain()
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [x for b in batches for x in b] == [str(i) for i in range(25)]


async def test_failing_batch_is_retried_then_dead_lettered_per_event() -> None:
    app = shop()
    calls: list[int] = []

    @app.subscribe(
        "order.events", batch_size=3, retry=RetryPolicy(max_attempts=2, initial_delay=0.01)
    )
    async def many(events: list[Event]) -> None:
        calls.append(len(events))
        raise RuntimeError("batch failed")

    async with Harness(app, partitions=1) as harness:
        await app.publish_batch([OrderPlaced(order_id=str(i)) for i in range(3)])
        await harness.drain()
        letters = harness.dead_letters("order.events")
    assert calls == [3, 3]
    assert len(letters) == 3
    assert all(x.attempts == 2 for x in letters)


async def test_concurrency_keeps_one_event_per_key_in_flight() -> None:
    app = shop()
    in_flight: dict[str, int] = {}
    max_total = 0
    per_key_order: dict[str, list[int]] = {}

    @app.subscribe("order.events", concurrency=8)
    async def worker(order: OrderPlaced, event: Event) -> None:
        nonlocal max_total
        key = event.partitionkey or ""
        in_flight[key] = in_flight.get(key, 0) + 1
        assert in_flight[key] == 1, "two events of one key in flight"
        max_total = max(max_total, sum(in_flight.values()))
        await asyncio.sleep(0.002)
        per_key_order.setdefault(key, []).append(order.quantity)
        in_flight[key] -= 1

    async with Harness(app) as harness:
        await app.publish_batch(
            [app.event(OrderPlaced(order_id="o", quantity=i), key=f"k{i % 6}") for i in range(120)]
        )
        await harness.drain()
    assert max_total > 1, "handlers of different keys should overlap"
    assert max_total <= 6
    for key, seq in per_key_order.items():
        assert seq == sorted(seq), key
    assert sum(len(s) for s in per_key_order.values()) == 120


async def test_prefetch_bounds_events_taken_from_the_broker() -> None:
    hub = MemoryHub()
    app = App("bp", broker=MemoryBroker(hub))
    release = asyncio.Event()
    running = 0

    @app.subscribe("t", prefetch=5, concurrency=5, ordering="none")
    async def slow(data: dict[str, Any]) -> None:
        nonlocal running
        running += 1
        await release.wait()

    async with app:
        await app.publish_batch([app.event({"i": i}, type="T") for i in range(100)], topic="t")
        await asyncio.sleep(0.1)
        (state,) = hub.groups.values()
        taken = sum(len(x) for x in state.inflight)
        assert taken == 5
        assert running == 5
        release.set()
        for _ in range(200):
            if hub.is_idle():
                break
            await asyncio.sleep(0.01)
        assert hub.is_idle()


# -- middleware, lifecycle ------------------------------------------------------------------


async def test_middleware_wraps_handling_and_publishing_in_order() -> None:
    app = shop()
    trail: list[str] = []

    def outer(next_handle: Handle) -> Handle:
        async def handle(ctx: Context) -> list[Event]:
            trail.append("outer>")
            result = await next_handle(ctx)
            trail.append("<outer")
            return result

        return handle

    def inner(next_handle: Handle) -> Handle:
        async def handle(ctx: Context) -> list[Event]:
            trail.append("inner>")
            return await next_handle(ctx)

        return handle

    def publish_log(next_publish: PublishFn) -> PublishFn:
        async def publish(outgoing: Outgoing) -> None:
            trail.append(f"publish {outgoing.topic}")
            await next_publish(outgoing)

        return publish

    app.add_middleware(outer)
    app.add_middleware(inner)
    app.add_publish_middleware(publish_log)

    @app.subscribe("order.events")
    async def reserve(order: OrderPlaced) -> InventoryReserved:
        trail.append("handler")
        return InventoryReserved(order_id=order.order_id)

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="1"))
        await harness.drain()
        with pytest.raises(ConfigurationError, match="is running"):
            app.add_middleware(outer)
    assert trail == [
        "publish order.events",
        "outer>",
        "inner>",
        "handler",
        "<outer",
        "publish inventory.events",
    ]


async def test_graceful_stop_finishes_in_flight_handlers_and_acks() -> None:
    hub = MemoryHub()
    app = App("drain", broker=MemoryBroker(hub))
    started = asyncio.Event()
    finished: list[int] = []

    @app.subscribe("t")
    async def slow(data: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(data["i"])

    await app.start()
    await app.publish({"i": 1}, topic="t", type="T")
    await started.wait()
    await app.stop()
    assert finished == [1]
    assert hub.is_idle() or not any(s.members for s in hub.groups.values())
    (state,) = hub.groups.values()
    assert state.backlog() == 0, "the finished event must have been acked"


async def test_stop_timeout_leaves_unfinished_event_for_redelivery() -> None:
    hub = MemoryHub()
    first = App("svc", broker=MemoryBroker(hub))
    started = asyncio.Event()

    @first.subscribe("t", group="g")
    async def stuck(data: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    await first.start()
    await first.publish({"i": 1}, topic="t", type="T")
    await started.wait()
    await first.stop(timeout=0.1)

    second = App("svc2", broker=MemoryBroker(hub))
    got: list[int] = []

    @second.subscribe("t", group="g")
    async def fine(data: dict[str, Any], ctx: Context) -> None:
        got.append(ctx.attempt)

    async with second:
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
    assert got == [2]


async def test_two_apps_in_one_group_compete_and_other_groups_fan_out() -> None:
    hub = MemoryHub()
    members = [App(f"inv{i}", broker=MemoryBroker(hub)) for i in range(2)]
    audit = App("audit", broker=MemoryBroker(hub))
    seen: dict[str, list[int]] = {"inv0": [], "inv1": [], "audit": []}
    for app in [*members, audit]:
        group = "audit" if app is audit else "inventory"

        def make(name: str) -> Any:
            async def handler(data: dict[str, Any]) -> None:
                seen[name].append(data["i"])

            return handler

        app.add_subscription(make(app.name), "t", group=group)
    for app in [*members, audit]:
        await app.start()
    producer = App("producer", broker=MemoryBroker(hub))
    await producer.publish_batch(
        [producer.event({"i": i}, type="T", key=f"k{i}") for i in range(100)], topic="t"
    )
    for _ in range(300):
        if hub.is_idle():
            break
        await asyncio.sleep(0.01)
    for app in [*members, audit]:
        await app.stop()
    assert sorted(seen["audit"]) == list(range(100))
    assert sorted(seen["inv0"] + seen["inv1"]) == list(range(100))
    assert seen["inv0"] and seen["inv1"]


async def test_subscription_validation_errors_are_clear() -> None:
    app = App("v", broker="memory://")
    with pytest.raises(ConfigurationError, match="delivery"):
        app.add_subscription(lambda d: None, "t", delivery="twice")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="concurrency"):
        app.add_subscription(lambda d: None, "t", concurrency=0)
    with pytest.raises(ConfigurationError, match="topic"):
        app.add_subscription(lambda d: None, "bad topic")
    with pytest.raises(ConfigurationError, match="no broker"):
        App("x", broker="nope://host")
    with pytest.raises(ConfigurationError, match="already exists"):
        app.add_subscription(lambda d: None, "t", name="same")
        app.add_subscription(lambda d: None, "t", name="same")


async def test_broker_url_password_is_redacted() -> None:
    with pytest.raises(ConfigurationError) as info:
        App("x", broker="nope://user:secret@host:1")
    assert "secret" not in str(info.value)


async def test_second_signal_cancels_the_drain() -> None:
    import os
    import signal

    hub = MemoryHub()
    app = App("sig", broker=MemoryBroker(hub))
    started = asyncio.Event()

    @app.subscribe("t")
    async def stuck(data: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    stop = asyncio.Event()
    serving = asyncio.create_task(app.serve(stop))
    await asyncio.sleep(0.05)
    await app.publish({"i": 1}, topic="t", type="T")
    await asyncio.wait_for(started.wait(), 2)
    began = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.1)
    assert not serving.done(), "the first signal drains: the stuck handler keeps it running"
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(serving, 5)
    assert time.monotonic() - began < 5
    (state,) = hub.groups.values()
    assert state.backlog() == 1, "the cancelled event must stay unacked"


async def test_exactly_once_is_rechecked_when_the_broker_changes() -> None:
    app = App("x", broker="memory://")

    @app.subscribe("t", delivery="exactly_once")
    async def handler(data: dict[str, Any]) -> None: ...

    plain = MemoryBroker()
    plain.capabilities = dataclasses.replace(plain.capabilities, exactly_once=False)
    app.set_broker(plain)
    with pytest.raises(ConfigurationError, match="exactly_once"):
        await app.start()


async def test_failed_exactly_once_commit_redelivers_and_the_consumer_goes_on() -> None:
    class FlakyCommit(MemoryBroker):
        failures = 1

        async def commit(self, delivery: Any, outputs: Any, dedup_key: str | None = None) -> bool:
            if self.failures:
                self.failures -= 1
                raise OSError("disk hiccup")
            return await super().commit(delivery, outputs, dedup_key)

    hub = MemoryHub()
    app = App("eo", broker=FlakyCommit(hub))
    app.route("Done", "out")
    attempts: list[int] = []

    @app.subscribe("in", delivery="exactly_once")
    async def handle(data: dict[str, Any], ctx: Context) -> Event:
        attempts.append(ctx.attempt)
        return app.event(data, type="Done")

    async with app:
        await app.publish({"n": 1}, topic="in", type="T", key="k")
        await app.publish({"n": 2}, topic="in", type="T", key="k")
        for _ in range(300):
            if len(hub.records("out")) == 2 and hub.is_idle():
                break
            await asyncio.sleep(0.01)
    outputs = [app.codec.decode(m.value, m.headers).data["n"] for _, _, m in hub.records("out")]
    assert outputs == [1, 2], "per-key order kept across the failed commit"
    assert attempts == [1, 2, 1]


def test_wildcard_subscriptions_are_refused_on_a_broker_without_wildcards() -> None:
    app = App("x", broker="memory://")
    with pytest.raises(ConfigurationError, match="no wildcard subscriptions"):

        @app.subscribe("orders.*")
        async def handler(data: dict[str, Any]) -> None: ...


async def test_publishing_to_a_wildcard_topic_is_refused() -> None:
    app = App("x", broker="memory://")
    with pytest.raises(ConfigurationError, match="no whitespace or wildcards"):
        await app.publish({"n": 1}, type="T", topic="orders.*")


def test_key_order_without_key_affinity_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    broker.capabilities = dataclasses.replace(broker.capabilities, key_affinity=False)
    app = App("x", broker=broker)

    @app.subscribe("t")
    async def handler(data: dict[str, Any]) -> None: ...

    async def start_and_stop() -> None:
        async with app:
            pass

    asyncio.run(start_and_stop())
    assert "does not keep a key on one member of a group" in caplog.text


async def test_message_ids_are_set_only_for_brokers_that_deduplicate_publishes() -> None:
    plain = MemoryBroker()
    deduplicating = MemoryBroker()
    deduplicating.capabilities = dataclasses.replace(plain.capabilities, publish_dedup=True)
    for broker, expect_id in ((plain, False), (deduplicating, True)):
        app = App("ids", broker=broker)
        event = await app.publish({"n": 1}, type="T", topic="t")
        ((_, _, message),) = broker.hub.records("t")
        assert message.id == (event.id if expect_id else None)
        await app.stop()


class _BinaryMemoryBroker(MemoryBroker):
    """A broker whose protocol binding prefers CloudEvents binary mode."""

    def default_codec(self) -> Codec:
        return Codec("binary", header_prefix="ce_")


async def test_an_app_uses_the_codec_its_broker_prefers(memory_url: Any) -> None:
    url = memory_url()
    app = App("wire", broker=_BinaryMemoryBroker.from_url(url))
    assert app.codec.mode == "binary"
    assert App("given", broker=_BinaryMemoryBroker.from_url(url), codec=Codec()).codec.mode == (
        "structured"
    )
    assert App("plain", broker=url).codec.mode == "structured"


async def test_requests_waiting_when_the_app_stops_raise_request_error() -> None:
    from tidings import RequestError, RequestTimeout

    app = App("asker", broker="memory://")
    async with app:
        waiting = asyncio.ensure_future(
            app.request({"q": 1}, topic="nobody.answers", type="Ask", timeout=30.0)
        )
        while app.requests.outstanding == 0:  # noqa: ASYNC110 - the request is on its way
            await asyncio.sleep(0.01)
    with pytest.raises(RequestError, match="stopped before request") as stopped:
        await waiting
    assert not isinstance(stopped.value, RequestTimeout)
    with pytest.raises(ConfigurationError, match="stopped"):
        await app.request({"q": 2}, topic="nobody.answers", type="Ask")


async def test_a_request_needs_a_positive_timeout() -> None:
    app = App("asker", broker="memory://")
    with pytest.raises(ConfigurationError, match="timeout"):
        await app.request({"q": 1}, topic="t", type="Ask", timeout=0)
    await app.stop()


def test_set_broker_takes_the_new_brokers_wire_format_unless_a_codec_was_given() -> None:
    from tidings.codec import Codec

    app = App("rebroker", broker="memory://")
    app.set_broker("nats://127.0.0.1:4222")  # not connected: only its binding is read
    wanted = app.broker.default_codec()  # type: ignore[attr-defined]
    assert (app.codec.mode, app.codec.header_prefix) == (wanted.mode, wanted.header_prefix)
    assert app.codec.mode == "binary"  # memory:// gave structured JSON
    mine = Codec()
    chosen = App("kept", broker="memory://", codec=mine)
    chosen.set_broker("nats://127.0.0.1:4222")
    assert chosen.codec is mine
