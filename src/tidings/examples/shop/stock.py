"""Stock levels as a fold over the inventory's events (event sourcing, by hand).

The inventory service decides with it and the invariant checks rebuild it
from the stored events, so both agree on what every event means. Applying an
event twice changes nothing: a reservation is keyed by its order, a stock
delivery by its batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from tidings.examples.shop.events import (
    InventoryRejected,
    InventoryReleased,
    InventoryReserved,
    LineItem,
    StockAdded,
    StockShipped,
)

__all__ = ["Reservation", "Stock", "quantities"]

Status = Literal["reserved", "rejected", "released", "shipped"]


def quantities(items: Iterable[LineItem]) -> Counter[str]:
    """Units per SKU (an order may name one SKU on several lines)."""
    out: Counter[str] = Counter()
    for item in items:
        out[item.sku] += item.quantity
    return out


@dataclass
class Reservation:
    """What the inventory decided for one order, and where the stock is now."""

    decision: InventoryReserved | InventoryRejected
    status: Status
    units: Counter[str] = field(default_factory=Counter)


@dataclass
class Stock:
    """Per SKU: units ever added, on hand (free), reserved, and shipped."""

    added: Counter[str] = field(default_factory=Counter)
    on_hand: Counter[str] = field(default_factory=Counter)
    reserved: Counter[str] = field(default_factory=Counter)
    shipped: Counter[str] = field(default_factory=Counter)
    batches: set[str] = field(default_factory=set)
    orders: dict[str, Reservation] = field(default_factory=dict)

    def apply(self, payload: BaseModel) -> bool:
        """Apply one inventory event; False if it changed nothing (a duplicate, or not ours)."""
        if isinstance(payload, StockAdded):
            if payload.batch in self.batches:
                return False
            self.batches.add(payload.batch)
            self.added[payload.sku] += payload.quantity
            self.on_hand[payload.sku] += payload.quantity
            return True
        if isinstance(payload, InventoryReserved | InventoryRejected):
            if payload.order_id in self.orders:
                return False
            if isinstance(payload, InventoryRejected):
                self.orders[payload.order_id] = Reservation(payload, "rejected")
                return True
            units = quantities(payload.items)
            self.on_hand.subtract(units)
            self.reserved.update(units)
            self.orders[payload.order_id] = Reservation(payload, "reserved", units)
            return True
        if isinstance(payload, InventoryReleased | StockShipped):
            reservation = self.orders.get(payload.order_id)
            if reservation is None or reservation.status != "reserved":
                return False
            self.reserved.subtract(reservation.units)
            if isinstance(payload, InventoryReleased):
                self.on_hand.update(reservation.units)
                reservation.status = "released"
            else:
                self.shipped.update(reservation.units)
                reservation.status = "shipped"
            return True
        return False

    def shortages(self, units: Counter[str]) -> list[str]:
        """The SKUs of which fewer than ``units`` are on hand."""
        return sorted(sku for sku, wanted in units.items() if self.on_hand[sku] < wanted)

    def status_of(self, order_id: str) -> Status | None:
        reservation = self.orders.get(order_id)
        return None if reservation is None else reservation.status

    def levels(self) -> dict[str, tuple[int, int, int, int]]:
        """Per SKU: (added, on hand, reserved, shipped)."""
        skus = sorted(set(self.added) | set(self.on_hand) | set(self.reserved))
        return {
            sku: (self.added[sku], self.on_hand[sku], self.reserved[sku], self.shipped[sku])
            for sku in skus
        }
