"""Order service: accepts orders and follows each one to the end.

:class:`OrderGenerator` plays the customers: random customers order random
items from the catalogue (a seeded RNG), now and then a buggy client sends a
malformed order (a poison event, for the dead-letter topic), and one
customer orders suspiciously often (for fraud detection to notice).
:func:`place_orders` publishes them as ``OrderPlaced`` to ``order.events``,
keyed by order id, at a chosen rate.

The service marks orders confirmed, cancelled or shipped from the events it
hears (``tidings run tidings.examples.shop.orders:app``). To place orders
from outside the running services::

    python -m tidings.examples.shop.orders --orders 100 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tidings import App, Event
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.catalogue import CATALOGUE, price_of
from tidings.examples.shop.events import (
    ORDER_EVENTS,
    SHIPPING_EVENTS,
    LineItem,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    parse,
    prepare,
)
from tidings.schemas import Schemas

__all__ = ["OrderGenerator", "OrderService", "OrderState", "main", "place_orders"]

#: The customer who orders too often, every this many orders.
SUSPICIOUS_CUSTOMER = "C-0666"
SUSPICIOUS_EVERY = 20
#: A malformed order follows every this many orders (the 7th, the 57th, ...).
POISON_EVERY = 50
_BATCH = 100


@dataclass
class OrderState:
    placed: bool = False
    confirmed: bool = False
    cancelled: bool = False
    shipped: bool = False

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.shipped:
            return "shipped"
        return "confirmed" if self.confirmed else "placed"


class OrderService:
    """``orders``: what the service heard about each order, by order id."""

    def __init__(self, broker: str | Broker | None = None) -> None:
        # The order generator plays a buggy client too (its poison orders): it does not
        # check what it publishes, so the consumers' checks and the DLQ get to work.
        self.app = prepare(App("orders", broker=broker, schemas=Schemas(validate_publish=False)))
        self.orders: dict[str, OrderState] = {}
        self.app.add_subscription(self.track, [ORDER_EVENTS, SHIPPING_EVENTS])

    async def track(self, event: Event) -> None:
        # The Event, not a payload type: this handler sees every order event and
        # ignores a malformed one (the inventory dead-letters it, once).
        payload = parse(event)
        order_id = getattr(payload, "order_id", None)
        if not isinstance(order_id, str):
            return
        state = self.orders.setdefault(order_id, OrderState())
        if isinstance(payload, OrderPlaced):
            state.placed = True
        elif isinstance(payload, OrderConfirmed):
            state.confirmed = True
        elif isinstance(payload, OrderCancelled):
            state.cancelled = True
        elif isinstance(payload, OrderShipped):
            state.shipped = True

    def count(self, status: str) -> int:
        return sum(1 for state in self.orders.values() if state.status == status)


class OrderGenerator:
    """Makes orders (and the odd poison event) as a given app would publish them."""

    def __init__(self, app: App, *, seed: int = 7, run: str | None = None) -> None:
        self.app = app
        self.random = random.Random(seed)
        self.run = run or secrets.token_hex(2)
        self.made = 0
        self.poison = 0

    def next_events(self) -> list[Event]:
        """The next order's ``OrderPlaced`` event, sometimes followed by a poison one."""
        self.made += 1
        n = self.made
        customer = (
            SUSPICIOUS_CUSTOMER
            if n % SUSPICIOUS_EVERY == 0
            else f"C-{self.random.randrange(1000):04d}"
        )
        chosen = self.random.sample(CATALOGUE, k=self.random.choice((1, 1, 2, 2, 3)))
        items = [LineItem(sku=p.sku, quantity=self.random.choice((1, 1, 1, 2, 3))) for p in chosen]
        total = round(sum(price_of(i.sku) * i.quantity for i in items), 2)
        order = OrderPlaced(
            order_id=f"ORD-{self.run}-{n:06d}",
            customer_id=customer,
            items=items,
            total=total,
            placed_at=datetime.now(UTC),
        )
        events = [self.app.event(order, key=order.order_id)]
        if n % POISON_EVERY == 7:
            self.poison += 1
            bad_id = f"BAD-{self.run}-{n:06d}"
            poison = {  # what a buggy client might send: quantities as words, a total with text
                "order_id": bad_id,
                "customer_id": customer,
                "items": [{"sku": "MUG-EVT", "quantity": "two"}],
                "total": "25.00 EUR",
                "placed_at": "yesterday",
            }
            events.append(self.app.event(poison, key=bad_id, type="OrderPlaced"))
        return events


async def place_orders(
    generator: OrderGenerator,
    count: int,
    rate: float,
    stop: asyncio.Event | None = None,
    on_placed: Callable[[int], None] | None = None,
) -> int:
    """Publish ``count`` orders (0: until ``stop`` is set) at ``rate`` per second (0: at once).

    Returns how many orders were placed.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    placed = 0
    while (count == 0 or placed < count) and not (stop is not None and stop.is_set()):
        due = _BATCH
        if rate > 0:
            due = int((loop.time() - started) * rate) + 1 - placed
            if due <= 0:
                wait = started + placed / rate - loop.time()
                await _sleep(max(wait, 0.001), stop)
                continue
        if count:
            due = min(due, count - placed)
        events: list[Event] = []
        for _ in range(min(due, _BATCH)):
            events.extend(generator.next_events())
        await generator.app.publish_batch(events)
        placed += min(due, _BATCH)
        if on_placed is not None:
            on_placed(placed)
        if rate <= 0:
            await asyncio.sleep(0)  # let the consumers in between batches
    return placed


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _generate(broker: str | None, count: int, rate: float, seed: int) -> None:
    service = OrderService(broker)
    generator = OrderGenerator(service.app, seed=seed)
    try:
        placed = await place_orders(generator, count, rate)
    finally:
        await service.app.stop()
    print(f"placed {placed} orders ({generator.poison} poison) as run {generator.run}")


def main(argv: list[str] | None = None) -> int:
    """``python -m tidings.examples.shop.orders``: place orders on a running shop."""
    parser = argparse.ArgumentParser(prog="python -m tidings.examples.shop.orders")
    parser.add_argument("--orders", type=int, default=100, help="orders to place (default 100)")
    parser.add_argument("--rate", type=float, default=50.0, help="per second; 0: at once")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--broker", help="broker URL (default: TIDINGS_BROKER)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.rate < 0:
        parser.error("--orders must be >= 1 and --rate >= 0")
    asyncio.run(_generate(args.broker, args.orders, args.rate, args.seed))
    return 0


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, OrderService)


if __name__ == "__main__":
    sys.exit(main())
