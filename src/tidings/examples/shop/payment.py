"""Payment service: ``PaymentRequested`` -> ``PaymentProcessed`` or ``PaymentFailed``;
``RefundPayment`` -> ``PaymentRefunded``.

The gateway is simulated, deterministically per order id: a share of the
payments is declined (``fail_rate``), for a few the first attempt times out
(``transient_rate``), which the retry policy handles with short backoffs, and
a share is answered only after ``stall`` seconds (``stall_rate``): later than
the order saga waits, which then cancels the order and asks for a refund when
the payment comes. Because the decision depends only on the order id, a
redelivered request gets the same answer.

Run it alone with ``tidings run tidings.examples.shop.payment:app``
(``SHOP_FAIL_RATE`` and ``SHOP_TRANSIENT_RATE`` set the shares).
"""

from __future__ import annotations

import asyncio

from tidings import App, Context, RetryPolicy
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.config import ShopConfig, fraction
from tidings.examples.shop.events import (
    PAYMENT_COMMANDS,
    PaymentFailed,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRequested,
    RefundPayment,
    prepare,
)

__all__ = ["GatewayTimeout", "Payment"]

#: Short delays, so that retries show without slowing the demo down.
RETRY = RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=0.3)


class GatewayTimeout(Exception):
    """The (simulated) payment gateway did not answer in time; worth another try."""


class Payment:
    """The payment service. ``timeouts`` counts the first attempts that timed out,
    ``stalled`` the payments answered late, ``refunded`` the orders refunded."""

    def __init__(
        self, broker: str | Broker | None = None, config: ShopConfig | None = None
    ) -> None:
        self.config = config or ShopConfig.from_env()
        self.app = prepare(App("payment", broker=broker))
        self.timeouts = 0
        self.stalled = 0
        self.refunded: set[str] = set()
        self.app.add_subscription(self.charge, PAYMENT_COMMANDS, retry=RETRY, concurrency=8)
        self.app.add_subscription(self.refund, PAYMENT_COMMANDS, retry=RETRY)

    def declines(self, order_id: str) -> bool:
        return fraction(order_id, "decline") < self.config.fail_rate

    def times_out_first(self, order_id: str) -> bool:
        return fraction(order_id, "timeout") < self.config.transient_rate

    def stalls(self, order_id: str) -> bool:
        return fraction(order_id, "stall") < self.config.stall_rate

    async def charge(
        self, request: PaymentRequested, ctx: Context
    ) -> PaymentProcessed | PaymentFailed:
        if ctx.attempt == 1 and self.times_out_first(request.order_id):
            self.timeouts += 1
            raise GatewayTimeout(f"payment gateway timed out for {request.order_id}")
        if ctx.attempt == 1 and self.stalls(request.order_id):
            self.stalled += 1
            await asyncio.sleep(self.config.stall)
        if self.declines(request.order_id):
            return PaymentFailed(
                order_id=request.order_id, customer_id=request.customer_id, reason="card declined"
            )
        return PaymentProcessed(
            order_id=request.order_id, customer_id=request.customer_id, amount=request.amount
        )

    async def refund(self, command: RefundPayment, ctx: Context) -> PaymentRefunded | None:
        # Once per order; a redelivery says it again, in case the first answer was lost.
        if command.order_id in self.refunded and ctx.attempt == 1:
            return None
        self.refunded.add(command.order_id)
        return PaymentRefunded(
            order_id=command.order_id, customer_id=command.customer_id, amount=command.amount
        )


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, Payment)
