"""Inventory service: reserves stock for orders, releases it, hands it to shipping.

``OrderPlaced`` -> ``InventoryReserved`` or ``InventoryRejected`` (out of
stock); ``ReleaseInventory`` (the saga's compensation) -> ``InventoryReleased``;
``OrderShipped`` -> ``StockShipped``. Stock lives in memory and is rebuilt from
the service's own topic before the first event is handled; the initial stock
is itself an event (``StockAdded``), published once, when the log holds none.

At-least-once delivery means an order may arrive twice: its reservation is
keyed by the order id, so a redelivery never reserves again; it repeats the
decision instead, in case the first answer was never published.

Run it alone with ``tidings run tidings.examples.shop.inventory:app``.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel

from tidings import App, Context, RetryPolicy
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.catalogue import CATALOGUE, RESTOCK_BELOW
from tidings.examples.shop.eventlog import EventLog
from tidings.examples.shop.events import (
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    SHIPPING_EVENTS,
    InventoryRejected,
    InventoryReleased,
    InventoryReserved,
    OrderPlaced,
    OrderShipped,
    ReleaseInventory,
    StockAdded,
    StockShipped,
    parse,
    prepare,
)
from tidings.examples.shop.stock import Stock, quantities

__all__ = ["Inventory"]

log = logging.getLogger("tidings.examples.shop.inventory")
RETRY = RetryPolicy(max_attempts=5, initial_delay=0.05, max_delay=0.5)
_RESTOCKS = {p.sku: p.restock for p in CATALOGUE if p.restock}


class Inventory:
    """The inventory service; ``stock`` is its state."""

    def __init__(self, broker: str | Broker | None = None) -> None:
        self.app = prepare(App("inventory", broker=broker))
        self.stock = Stock()
        self._loaded = False
        self._lock = asyncio.Lock()
        self.app.add_subscription(self.reserve, ORDER_EVENTS, retry=RETRY)
        self.app.add_subscription(self.release, INVENTORY_COMMANDS, retry=RETRY)
        self.app.add_subscription(self.ship, SHIPPING_EVENTS, retry=RETRY)

    async def load(self) -> None:
        """Rebuild the stock from ``inventory.events``; stock the shelves if it is empty.

        Runs once, before the first event is handled (or earlier, if called).
        """
        async with self._lock:
            if self._loaded:
                return
            records = await EventLog(self.app.broker, [INVENTORY_EVENTS], self.app.codec).read_all()
            for record in records:
                payload = parse(record.event) if record.event is not None else None
                if payload is not None:
                    self.stock.apply(payload)
            initial = [
                StockAdded(sku=p.sku, quantity=p.initial_stock, batch=f"initial:{p.sku}")
                for p in CATALOGUE
                if f"initial:{p.sku}" not in self.stock.batches
            ]
            if initial:
                await self.app.publish_batch(initial)
                for added in initial:
                    self.stock.apply(added)
            log.info("stock rebuilt from %d event(s)", len(records))
            self._loaded = True

    async def reserve(self, order: OrderPlaced, ctx: Context) -> list[BaseModel]:
        await self.load()
        known = self.stock.orders.get(order.order_id)
        if known is not None:
            # Seen before. On a redelivery, say again what was decided (the first
            # answer may be lost); a second copy of the order gets no answer.
            return [known.decision, *self._restocks_of(order)] if ctx.attempt > 1 else []
        units = quantities(order.items)
        short = self.stock.shortages(units)
        decision: InventoryReserved | InventoryRejected
        if short:
            decision = InventoryRejected(
                order_id=order.order_id, reason=f"out of stock: {', '.join(short)}"
            )
        else:
            decision = InventoryReserved(
                order_id=order.order_id,
                customer_id=order.customer_id,
                items=order.items,
                total=order.total,
            )
        self.stock.apply(decision)
        restocks: list[BaseModel] = []
        for sku in sorted(units):
            if sku in _RESTOCKS and self.stock.on_hand[sku] < RESTOCK_BELOW:
                added = StockAdded(
                    sku=sku, quantity=_RESTOCKS[sku], batch=f"restock:{sku}:{order.order_id}"
                )
                self.stock.apply(added)
                restocks.append(added)
        return [decision, *restocks]

    def _restocks_of(self, order: OrderPlaced) -> list[StockAdded]:
        return [
            StockAdded(sku=sku, quantity=_RESTOCKS[sku], batch=batch)
            for sku in sorted(quantities(order.items))
            if (batch := f"restock:{sku}:{order.order_id}") in self.stock.batches
        ]

    async def release(self, command: ReleaseInventory, ctx: Context) -> InventoryReleased | None:
        await self.load()
        reservation = self.stock.orders.get(command.order_id)
        if reservation is None or not isinstance(reservation.decision, InventoryReserved):
            log.warning("nothing reserved for %s; nothing to release", command.order_id)
            return None
        released = InventoryReleased(
            order_id=command.order_id, items=reservation.decision.items, reason=command.reason
        )
        if self.stock.apply(released) or (ctx.attempt > 1 and reservation.status == "released"):
            return released
        return None

    async def ship(self, shipped: OrderShipped, ctx: Context) -> StockShipped | None:
        await self.load()
        reservation = self.stock.orders.get(shipped.order_id)
        if reservation is None or not isinstance(reservation.decision, InventoryReserved):
            log.warning("order %s shipped without a reservation", shipped.order_id)
            return None
        out = StockShipped(order_id=shipped.order_id, items=reservation.decision.items)
        if self.stock.apply(out) or (ctx.attempt > 1 and reservation.status == "shipped"):
            return out
        return None


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, Inventory)
