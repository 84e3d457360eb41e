"""Quickstart: typed events, chaining, a retry and dead letters on the in-memory broker.

Four orders go in. ``reserve_stock`` answers each valid order with a
``StockReserved`` follow-up (caused by the order event); ``charge_payment``
meets a payment-gateway timeout on its first try for ORD-2 and succeeds when
the event is redelivered. ORD-3 names an unknown SKU, so the handler rejects
it, and ORD-4 carries data that does not validate: both land in
``orders.dlq``, where a third subscription reads their failure records.

Run it with ``python -m tidings.examples.quickstart``.
It checks its own expectations; :func:`run` returns False if any failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, Field
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings import App, Context, DeadLetter, Event, Handle, Message, Reject, RetryPolicy
from tidings.broker import Broker
from tidings.brokers.memory import MemoryBroker

__all__ = ["OrderPlaced", "StockReserved", "build_app", "main", "quiet_logs", "run"]

ORDERS = "orders"
INVENTORY = "inventory"
ORDERS_DLQ = ORDERS + ".dlq"
FLAKY_ORDER = "ORD-2"
TIMEOUT = 5.0


class OrderPlaced(BaseModel):
    order_id: str
    sku: str
    quantity: int = Field(gt=0)


class StockReserved(BaseModel):
    order_id: str
    sku: str
    quantity: int


@dataclass
class Journal:
    """What happened, keyed by order id, for the final checks."""

    published: dict[str, Event] = field(default_factory=dict)  # the OrderPlaced events
    charged: dict[str, Event] = field(default_factory=dict)  # the StockReserved events
    charge_attempts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # handler, order, attempt
    dead: dict[str, DeadLetter] = field(default_factory=dict)


def _say(console: Console, label: str, style: str, text: str) -> None:
    console.print(Text.assemble((f"{label:<14}", style), text))


def _short(event_id: str | None) -> str:
    return f"..{event_id[-8:]}" if event_id else "-"


def _order_id(event: Event) -> str:
    data = event.data
    found = data.get("order_id") if isinstance(data, dict) else getattr(data, "order_id", None)
    return str(found or "?")


def _one_line(message: str, limit: int = 110) -> str:
    """Validation errors span several lines; the report shows one, shortened."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def build_app(broker: str | Broker, console: Console, journal: Journal) -> App:
    """The quickstart App: three subscriptions that narrate to ``console``."""
    app = App("quickstart", broker=broker)
    app.route(OrderPlaced, ORDERS)
    app.route(StockReserved, INVENTORY)
    stock = {"BOOK": 10, "MUG": 5}
    quick_retries = RetryPolicy(max_attempts=3, initial_delay=0.05)

    def narrate(next_handle: Handle) -> Handle:
        """Middleware: one line per attempt, and one per follow-up it produced."""

        async def handle(ctx: Context) -> list[Event]:
            handler = ctx.subscription.removeprefix(f"{app.name}.")
            what = f"{handler}: {ctx.event.type} {_order_id(ctx.event)} (attempt {ctx.attempt})"
            try:
                follow_ups = await next_handle(ctx)
            except Exception as exc:
                journal.failures.append((handler, _order_id(ctx.event), ctx.attempt))
                error = f"{type(exc).__name__}: {_one_line(str(exc))}"
                _say(console, "  failed", "bold yellow", f"{what}: {error}")
                raise
            _say(console, "  handled", "bold green", what)
            for event in follow_ups:
                _say(
                    console,
                    "  follow-up",
                    "bold cyan",
                    f"{event.type} {_order_id(event)}, caused by {ctx.event.type} "
                    f"{_short(event.causationid)}",
                )
            return follow_ups

        return handle

    @app.subscribe(ORDERS, retry=quick_retries, middleware=[narrate])
    async def reserve_stock(order: OrderPlaced) -> StockReserved:
        if order.sku not in stock:
            raise Reject(f"unknown SKU {order.sku!r}")  # no retry can fix this
        stock[order.sku] -= order.quantity
        return StockReserved(order_id=order.order_id, sku=order.sku, quantity=order.quantity)

    @app.subscribe(INVENTORY, retry=quick_retries, middleware=[narrate])
    async def charge_payment(reserved: StockReserved, event: Event, ctx: Context) -> None:
        if reserved.order_id == FLAKY_ORDER and ctx.attempt == 1:
            raise TimeoutError("payment gateway timed out")  # transient: retried
        journal.charged[reserved.order_id] = event
        journal.charge_attempts[reserved.order_id] = ctx.attempt

    @app.subscribe(ORDERS_DLQ)
    async def read_dead_letters(event: Event, ctx: Context) -> None:
        d = ctx.delivery
        letter = DeadLetter.from_message(Message(d.value, d.headers, d.key))
        journal.dead[_order_id(event)] = letter
        _say(
            console,
            "  dead-letter",
            "bold red",
            f"{event.type} {_order_id(event)} in {ctx.topic} after {letter.attempts} "
            f"attempt(s): {letter.error_type.rsplit('.', 1)[-1]}: "
            f"{_one_line(letter.error_message)}",
        )

    return app


async def _publish_orders(app: App, console: Console, journal: Journal) -> None:
    orders: list[tuple[OrderPlaced | dict[str, object], str]] = [
        (OrderPlaced(order_id="ORD-1", sku="BOOK", quantity=2), "2 x BOOK"),
        (OrderPlaced(order_id=FLAKY_ORDER, sku="MUG", quantity=1), "1 x MUG"),
        (OrderPlaced(order_id="ORD-3", sku="LAMP", quantity=1), "1 x LAMP, an unknown SKU"),
        # Poison: what a buggy producer might send. It can never validate.
        ({"order_id": "ORD-4", "sku": "BOOK", "quantity": "lots"}, "quantity='lots', invalid"),
    ]
    for order, note in orders:
        if isinstance(order, OrderPlaced):
            event = await app.publish(order, key=order.order_id)
        else:
            event = await app.publish(order, type="OrderPlaced", topic=ORDERS, key="ORD-4")
        journal.published[_order_id(event)] = event
        _say(
            console,
            "published",
            "bold",
            f"{event.type} {_order_id(event)} ({note}) -> {ORDERS}, id {_short(event.id)}",
        )


def _done(app: App, journal: Journal) -> bool:
    return len(journal.charged) == 2 and len(journal.dead) == 2 and app.idle


async def _settled(app: App, journal: Journal) -> None:
    # Polling: "idle" is a state of several consumers, not an event one can await.
    while not _done(app, journal):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def _checks(app: App, journal: Journal) -> list[tuple[str, bool]]:
    stats = app.stats()
    reserve = stats[f"{app.name}.reserve_stock"]
    charge = stats[f"{app.name}.charge_payment"]
    published = journal.published
    caused_by_order = all(
        order_id in published and event.causationid == published[order_id].id
        for order_id, event in journal.charged.items()
    )
    rejected = journal.dead.get("ORD-3")
    invalid = journal.dead.get("ORD-4")
    return [
        (
            f"ORD-1 and {FLAKY_ORDER} were charged",
            sorted(journal.charged) == sorted(["ORD-1", FLAKY_ORDER]),
        ),
        ("each StockReserved was caused by its OrderPlaced", caused_by_order),
        (
            f"{FLAKY_ORDER} failed once, then succeeded on attempt 2",
            ("charge_payment", FLAKY_ORDER, 1) in journal.failures
            and journal.charge_attempts.get(FLAKY_ORDER) == 2,
        ),
        (
            f"ORD-3 (unknown SKU) was rejected into {ORDERS_DLQ}, not retried",
            rejected is not None
            and rejected.error_type.endswith(".Reject")
            and rejected.attempts == 1,
        ),
        (
            f"ORD-4 (invalid data) went to {ORDERS_DLQ}, not retried",
            invalid is not None
            and invalid.error_type.endswith(".SchemaError")
            and invalid.attempts == 1,
        ),
        (
            "the counters agree",
            (reserve.handled, reserve.dead_lettered, charge.handled, charge.retried)
            == (2, 2, 2, 1),
        ),
    ]


def _counters(app: App) -> Table:
    """One column per subscription, so the table fits a narrow terminal."""
    columns = {
        name.removeprefix(f"{app.name}."): dataclasses.asdict(counters)
        for name, counters in app.stats().items()
    }
    table = Table(title="counters", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    for name in columns:
        table.add_column(name, justify="right")
    for counter in next(iter(columns.values()), {}):
        values = (str(column[counter]) for column in columns.values())
        table.add_row(counter.replace("_", "-"), *values)
    return table


async def run(broker: str | Broker | None = None, console: Console | None = None) -> bool:
    """Run the quickstart on ``broker`` (default: a private in-memory broker).

    Returns True when everything happened as expected.
    """
    console = console or Console(highlight=False, soft_wrap=True)
    journal = Journal()
    app = build_app(broker if broker is not None else MemoryBroker(), console, journal)
    where = app.broker_url or "a private in-memory broker"
    console.print(Text.assemble(("tidings quickstart", "bold"), f" on {where}"))
    started = time.monotonic()
    async with app:
        await _publish_orders(app, console, journal)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await _settled(app, journal)
    checks = _checks(app, journal)
    if not _done(app, journal):
        checks.append((f"everything settled within {TIMEOUT:.0f}s", False))
    console.print(_counters(app))
    for label, ok in checks:
        console.print(
            Text.assemble(("  ok    " if ok else "  FAIL  ", "green" if ok else "red"), label)
        )
    passed = all(ok for _, ok in checks)
    verdict = "everything happened as expected" if passed else "some expectations FAILED"
    console.print(Text(f"done in {time.monotonic() - started:.2f}s: {verdict}", style="bold"))
    return passed


def quiet_logs() -> None:
    """The run narrates every failure; tidings' own warnings would only repeat them."""
    logging.getLogger("tidings").setLevel(logging.ERROR)


def main() -> int:
    """``python -m tidings.examples.quickstart``: exit code 0 when all went as expected."""
    quiet_logs()
    return 0 if asyncio.run(run()) else 1


if __name__ == "__main__":
    sys.exit(main())
