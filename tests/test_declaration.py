"""Mistakes in a handler's declaration are caught when it is declared or the app starts.

And at run time, a configuration or routing mistake is dead-lettered at once, not
retried as if it were transient.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tidings import App, ConfigurationError, Context, Event


@dataclass
class Shipped:
    order: str


def test_a_scalar_parameter_is_refused_naming_handler_and_parameter() -> None:
    app = App("decl", broker="memory://")

    async def handle(e: Event, name: str) -> None: ...

    with pytest.raises(ConfigurationError) as caught:
        app.subscribe("t")(handle)
    message = str(caught.value)
    assert "test_declaration:" in message and "handle" in message
    assert "'name'" in message and "str" in message


def test_a_parameter_with_a_default_is_refused_naming_it() -> None:
    app = App("decl", broker="memory://")

    async def handle(e: Event, count: int = 3, *, flag: bool) -> None: ...

    with pytest.raises(ConfigurationError) as caught:
        app.subscribe("t")(handle)
    message = str(caught.value)
    assert "test_declaration:" in message and "handle" in message
    assert "'count'" in message and "default" in message


def test_a_keyword_only_scalar_is_refused_naming_it() -> None:
    app = App("decl", broker="memory://")

    async def handle(e: Event, *, flag: bool) -> None: ...

    with pytest.raises(ConfigurationError, match="'flag' is annotated bool"):
        app.subscribe("t")(handle)


def test_two_payloads_are_refused_naming_both() -> None:
    app = App("decl", broker="memory://")

    async def handle(order: Shipped, other: dict[str, Any]) -> None: ...

    with pytest.raises(ConfigurationError, match=r"more than one payload \('order', 'other'\)"):
        app.subscribe("t")(handle)


def test_the_accepted_parameters_still_work() -> None:
    app = App("decl", broker="memory://")

    async def one(e: Event, ctx: Context) -> None: ...
    async def two(order: Shipped, ctx: Context) -> None: ...
    async def three(events: list[Event]) -> None: ...
    async def four(data, event) -> None: ...  # type: ignore[no-untyped-def]
    async def five(data: bytes) -> None: ...

    for handler in (one, two, three, four, five):
        app.add_subscription(handler, "t")


async def test_a_return_type_without_a_route_fails_the_start() -> None:
    app = App("decl", broker="memory://unrouted")

    @app.subscribe("orders")
    async def ship(data: dict[str, Any]) -> Shipped:
        return Shipped(order=data["id"])

    with pytest.raises(ConfigurationError) as caught:
        await app.start()
    message = str(caught.value)
    assert "test_declaration:" in message and "ship" in message and "Shipped" in message
    assert "app.route(Shipped" in message


async def test_a_routed_return_type_and_a_reply_type_start() -> None:
    app = App("decl", broker="memory://routed")
    app.route(Shipped, "shipments")

    @app.subscribe("orders")
    async def ship(data: dict[str, Any]) -> Shipped | None:
        return Shipped(order=data["id"])

    @app.subscribe("price.requests", replies=True)
    async def answer(data: dict[str, Any]) -> Event:
        raise NotImplementedError

    async with app:
        pass


@pytest.mark.parametrize("returned", ["a str", 42, object()], ids=["str", "int", "object"])
async def test_a_returned_value_that_cannot_be_published_is_dead_lettered_at_once(
    returned: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App("decl", broker="memory://returns")
    attempts: list[int] = []

    @app.subscribe("orders", group="g")
    async def handle(ctx: Context) -> Any:
        attempts.append(ctx.attempt)
        return returned

    letters: list[Event] = []

    @app.subscribe("orders.dlq", group="dlq")
    async def dead(event: Event) -> None:
        letters.append(event)

    async with app:
        await app.publish({"id": "o1"}, topic="orders", type="OrderPlaced")
        for _ in range(500):
            if letters:
                break
            await asyncio.sleep(0.01)
    assert attempts == [1]
    assert len(letters) == 1
    (loud,) = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert loud.levelname == "ERROR" and "never retried" in loud.getMessage()


async def _publish_and_wait(app: App, types: list[str], handled: list[Any]) -> None:
    async with app:
        for type_ in types:
            await app.publish({"order": "o1"}, topic="orders", type=type_)
        for _ in range(500):
            sub = next(iter(app.stats().values()))
            if sub.skipped + len(handled) >= len(types):
                break
            await asyncio.sleep(0.01)


async def test_events_no_handler_takes_are_counted_by_type_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("skips", broker="memory://skips")
    handled: list[Shipped] = []

    @app.subscribe("orders", group="g")
    async def ship(order: Shipped) -> None:
        handled.append(order)

    with caplog.at_level("WARNING", logger="tidings.consumer"):
        await _publish_and_wait(app, ["Shipped", "OrderPaid", "OrderPaid", "Refund"], handled)
    assert len(handled) == 1
    assert app.stats()["skips.ship"].skipped_types == {"OrderPaid": 2, "Refund": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "'OrderPaid'" in warnings[0] and "the handler takes Shipped" in warnings[0]


async def test_events_the_filter_refuses_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("filtered", broker="memory://filtered")
    handled: list[Any] = []

    @app.subscribe("orders", group="g", filter={"exact": {"type": "OrderPlaced"}})
    async def place(data: dict[str, Any]) -> None:
        handled.append(data)

    with caplog.at_level("WARNING", logger="tidings.consumer"):
        await _publish_and_wait(app, ["OrderPlaced", "Other", "Other"], handled)
    assert app.stats()["filtered.place"].skipped_types == {"Other": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "filter" in warnings[0]
