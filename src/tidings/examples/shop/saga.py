"""The order saga: plain handlers that move an order from placed to confirmed or cancelled.

::

    InventoryReserved  -> PaymentRequested
    InventoryRejected  -> OrderCancelled            (out of stock)
    PaymentProcessed   -> OrderConfirmed
    PaymentFailed      -> ReleaseInventory          (compensation: ``compensates`` names
                                                     the order's OrderPlaced)
    InventoryReleased  -> OrderCancelled            (payment failed)

Each step depends only on the event it reacts to, so the saga keeps no state
and a redelivered event leads to the same step again (a duplicate the
services after it recognise by order id).

Run it alone with ``tidings run tidings.examples.shop.saga:app``.
"""

from __future__ import annotations

from tidings import App, Context
from tidings.broker import Broker
from tidings.compensation import compensating
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.events import (
    INVENTORY_EVENTS,
    PAYMENT_EVENTS,
    InventoryRejected,
    InventoryReleased,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    PaymentFailed,
    PaymentProcessed,
    PaymentRequested,
    ReleaseInventory,
    prepare,
)

__all__ = ["OrderSaga"]


class OrderSaga:
    def __init__(self, broker: str | Broker | None = None) -> None:
        self.app = prepare(App("saga", broker=broker))
        self.app.add_subscription(self.on_inventory, INVENTORY_EVENTS, concurrency=4)
        self.app.add_subscription(self.on_payment, PAYMENT_EVENTS, concurrency=4)

    async def on_inventory(
        self, outcome: InventoryReserved | InventoryRejected | InventoryReleased
    ) -> PaymentRequested | OrderCancelled:
        if isinstance(outcome, InventoryReserved):
            return PaymentRequested(
                order_id=outcome.order_id, customer_id=outcome.customer_id, amount=outcome.total
            )
        if isinstance(outcome, InventoryRejected):
            return OrderCancelled(order_id=outcome.order_id, reason=outcome.reason)
        return OrderCancelled(order_id=outcome.order_id, reason=f"{outcome.reason}; stock released")

    async def on_payment(
        self, outcome: PaymentProcessed | PaymentFailed, ctx: Context
    ) -> OrderConfirmed | None:
        if isinstance(outcome, PaymentProcessed):
            return OrderConfirmed(
                order_id=outcome.order_id, customer_id=outcome.customer_id, total=outcome.amount
            )
        # The stock was reserved when inventory handled the order's OrderPlaced: the
        # root of the order's flow, whose id every later event carries as correlationid.
        placed = ctx.event.correlationid or ctx.event.id
        ctx.emit(
            ReleaseInventory(order_id=outcome.order_id, reason=f"payment failed: {outcome.reason}"),
            extensions=compensating(placed),
        )
        return None


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, OrderSaga)
