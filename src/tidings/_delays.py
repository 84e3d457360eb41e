"""Delays the broker cannot keep, kept by the consumer (never early).

An event published with a delay on a broker without ``delayed_publish``
arrives at once with a ``tidings-deliver-at`` header: it is set aside (its
prefetch slot held, its key not) and admitted when its time comes. A retry on
a broker without ``delayed_redelivery`` waits here, then is nacked.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tidings.broker import Delivery
from tidings.publisher import DELIVER_AT_HEADER

if TYPE_CHECKING:
    from tidings._consumer import Consumer

__all__ = ["Delays"]


class Delays:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        #: Deliveries set aside until their time (never started).
        self.set_aside: set[Delivery] = set()

    def early(self, d: Delivery) -> bool:
        """Set ``d`` aside until its time if it arrived early; False if it is due."""
        due = d.headers.get(DELIVER_AT_HEADER)
        if due is None:
            return False
        try:
            remaining = float(due) - time.time()
        except ValueError:
            return False
        if remaining <= 0:
            return False
        consumer = self.consumer
        self.set_aside.add(d)
        consumer.timers.start(d, remaining, lambda: consumer.spawn(self._admit_late(d)))
        return True

    async def _admit_late(self, d: Delivery) -> None:
        self.set_aside.discard(d)
        consumer = self.consumer
        if consumer.flow.holds(d):
            await consumer.take((d,))
            if consumer.sub.concurrency > 1:
                consumer.pump()
            else:
                # The intake runs ready events one at a time; it may be waiting for a
                # free slot, which this event holds: wake it, or it waits for ever.
                consumer.flow.slot.set()

    def retry_later(self, d: Delivery, delay: float) -> None:
        """Nack ``d`` after ``delay`` seconds (for brokers that cannot delay a redelivery)."""
        consumer = self.consumer
        consumer.timers.start(d, delay, lambda: consumer.spawn(d.nack(0.0)))
