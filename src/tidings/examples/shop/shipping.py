"""Shipping service: ships confirmed (paid) orders. ``OrderConfirmed`` -> ``OrderShipped``.

Stateless: a redelivered confirmation ships again on paper, and the services
downstream (inventory, orders) treat a second ``OrderShipped`` of an order as
the duplicate it is.

Run it alone with ``tidings run tidings.examples.shop.shipping:app``.
"""

from __future__ import annotations

import zlib

from tidings import App
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.events import ORDER_EVENTS, OrderConfirmed, OrderShipped, prepare

__all__ = ["Shipping"]

CARRIERS = ("DHL", "UPS", "PostNL", "La Poste")


class Shipping:
    def __init__(self, broker: str | Broker | None = None) -> None:
        self.app = prepare(App("shipping", broker=broker))
        self.app.add_subscription(self.ship, ORDER_EVENTS, concurrency=4)

    async def ship(self, order: OrderConfirmed) -> OrderShipped:
        code = zlib.crc32(order.order_id.encode())
        return OrderShipped(
            order_id=order.order_id,
            carrier=CARRIERS[code % len(CARRIERS)],
            tracking=f"TRK{code:010d}",
        )


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, Shipping)
