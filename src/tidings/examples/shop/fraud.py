"""Fraud detection: flags suspicious customers from the payments they make.

Added late, without touching any producer: it subscribes to
``payment.events`` in a group of its own, and a new group starts from the
earliest stored event, so it first catches up on every payment made before
it existed, then follows live. ``PaymentProcessed`` -> ``CustomerFlagged``
when a customer pays for several orders in a short time, or for one very
large order. Each customer is flagged once.

Run it alone with ``tidings run tidings.examples.shop.fraud:app``.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from tidings import App, Event
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.events import (
    PAYMENT_EVENTS,
    CustomerFlagged,
    PaymentProcessed,
    prepare,
)

__all__ = ["BURST", "LARGE_ORDER", "WINDOW", "FraudDetection"]

#: Flag a customer with this many payments within WINDOW seconds...
BURST = 4
WINDOW = 30.0
#: ... or one payment of at least this amount.
LARGE_ORDER = 500.0


class FraudDetection:
    """``flagged``: customer id -> why."""

    def __init__(self, broker: str | Broker | None = None) -> None:
        self.app = prepare(App("fraud", broker=broker))
        self.flagged: dict[str, str] = {}
        self._recent: dict[str, deque[tuple[datetime, str]]] = {}
        self.app.add_subscription(self.screen, PAYMENT_EVENTS, start="earliest")

    async def screen(self, payment: PaymentProcessed, event: Event) -> CustomerFlagged | None:
        customer = payment.customer_id
        when = event.time or datetime.now().astimezone()
        recent = self._recent.setdefault(customer, deque())
        if all(order_id != payment.order_id for _, order_id in recent):
            recent.append((when, payment.order_id))
        while recent and (when - recent[0][0]).total_seconds() > WINDOW:
            recent.popleft()
        if customer in self.flagged:
            return None
        reason = None
        if len(recent) >= BURST:
            reason = f"{len(recent)} orders within {WINDOW:.0f}s"
        elif payment.amount >= LARGE_ORDER:
            reason = f"a single order of {payment.amount:.2f} EUR"
        if reason is None:
            return None
        self.flagged[customer] = reason
        return CustomerFlagged(
            customer_id=customer, reason=reason, order_ids=[o for _, o in recent]
        )


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, FraudDetection)
