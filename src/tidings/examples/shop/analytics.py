"""Analytics service: live metrics from every topic of the shop.

One subscription reads every topic (the dead-letter topic too) and keeps
running totals: events per topic, orders per second, revenue, conversion
(confirmed / placed), payment failures, fraud flags. It takes the ``Event``
itself, so it sees every type, valid or not, and never fails on a bad one.

Run it alone with ``tidings run tidings.examples.shop.analytics:app``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from tidings import App, Context, Event
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.events import (
    ALL_TOPICS,
    ORDER_DLQ,
    CustomerFlagged,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PaymentFailed,
    parse,
    prepare,
)

__all__ = ["Analytics", "Metrics"]

#: Orders per second are averaged over this many seconds.
WINDOW = 3.0


@dataclass
class Metrics:
    events: Counter[str] = field(default_factory=Counter)
    """Events seen per topic."""
    placed: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    payment_failures: set[str] = field(default_factory=set)
    flagged: set[str] = field(default_factory=set)
    invalid: int = 0
    revenue: float = 0.0
    recent: deque[float] = field(default_factory=deque)

    @property
    def conversion(self) -> float:
        """Share of placed orders that were confirmed."""
        return len(self.confirmed) / len(self.placed) if self.placed else 0.0

    def orders_per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self.recent and self.recent[0] < now - WINDOW:
            self.recent.popleft()
        return len(self.recent) / WINDOW

    @property
    def dead_letters(self) -> int:
        return self.events[ORDER_DLQ]


class Analytics:
    def __init__(self, broker: str | Broker | None = None) -> None:
        self.app = prepare(App("analytics", broker=broker))
        self.metrics = Metrics()
        self.app.add_subscription(self.observe, ALL_TOPICS)

    async def observe(self, event: Event, ctx: Context) -> None:
        m = self.metrics
        m.events[ctx.topic] += 1
        if ctx.topic == ORDER_DLQ:
            return
        payload = parse(event)
        if payload is None:
            if event.type == "OrderPlaced":
                m.invalid += 1
        elif isinstance(payload, OrderPlaced):
            if payload.order_id not in m.placed:
                m.placed.add(payload.order_id)
                m.recent.append(time.monotonic())
        elif isinstance(payload, OrderConfirmed):
            if payload.order_id not in m.confirmed:
                m.confirmed.add(payload.order_id)
                m.revenue += payload.total
        elif isinstance(payload, OrderCancelled):
            m.cancelled.add(payload.order_id)
        elif isinstance(payload, PaymentFailed):
            m.payment_failures.add(payload.order_id)
        elif isinstance(payload, CustomerFlagged):
            m.flagged.add(payload.customer_id)


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, Analytics)
