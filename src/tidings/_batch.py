"""Batch handlers: a list of events per call, settled per event.

Each event keeps its own attempt count: when a batch fails, the retry policy
decides for every delivery on its own (retry, or dead-letter once that one
is out of attempts). Under ``ordering="key"`` a batch holds at most one event
per key and later events of a key wait behind a retried one, exactly as for
single events; under ``ordering="none"`` a batch takes whatever is ready.
Exactly-once batch handling is refused when the subscription is declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from tidings._handling import begin
from tidings._logfields import EXTRA, delivery_fields, described
from tidings.broker import Delivery
from tidings.broker import Subscription as BrokerSubscription
from tidings.errors import AttemptsExhausted
from tidings.publisher import Publisher

if TYPE_CHECKING:
    from tidings._consumer import Consumer
    from tidings._handling import Item

__all__ = ["BatchHandling"]

log = logging.getLogger("tidings.consumer")


class BatchHandling:
    def __init__(self, consumer: Consumer, publisher: Publisher, app_name: str) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.app_name = app_name

    async def step(self, source: BrokerSubscription) -> None:
        """Fill a batch (from events released earlier and new deliveries), then handle it."""
        consumer = self.consumer
        size = consumer.sub.batch_size
        want = min(consumer.flow.free, size - len(consumer.ready))
        if want > 0:
            deliveries = await self._fetch(source, want, patient=not consumer.ready)
            consumer.receive(deliveries)
            await consumer.take(deliveries)
        elif not consumer.ready:
            consumer.flow.slot.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.flow.slot.wait(), 0.05)
            return
        if consumer.ready and not consumer.stopping:
            take = min(size, len(consumer.ready))
            await self.handle([consumer.ready.popleft() for _ in range(take)])

    async def _fetch(self, source: BrokerSubscription, size: int, patient: bool) -> list[Delivery]:
        consumer = self.consumer
        first_wait = (0.05 if consumer.timers.handles else 0.5) if patient else 0.0
        consumer.in_fetch = True  # a stop may cancel a fetch, never a handling
        try:
            out = list(await source.fetch(size, first_wait))
        finally:
            consumer.in_fetch = False
        if not out:
            return out
        deadline = time.monotonic() + consumer.sub.batch_timeout
        while len(out) < size and not consumer.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            out.extend(await source.fetch(size - len(out), remaining))
        return out

    async def handle(self, items: list[Item]) -> None:
        consumer = self.consumer
        handling = consumer.handling
        if consumer.sub.delivery != "at_most_once":
            items = await self._drop_exhausted(items)
            if not items:
                return
        deliveries = [d for d, _ in items]
        events = [event for _, event in items]
        ctx = handling.context(deliveries[0], events[0], events)
        at_most_once = consumer.sub.delivery == "at_most_once"
        if at_most_once:
            for d in deliveries:
                consumer.flow.release(d)
                await d.ack()
        else:
            for d in deliveries:  # CountsAttempts: the starts are recorded first
                if (written := begin(d)) is not None:
                    await written
        started = time.perf_counter()
        try:
            outputs = await handling.handle(ctx)
            await self.publisher.publish_events(outputs, ctx.routes)
        except Exception as exc:
            if at_most_once:
                consumer.stats.failed += len(deliveries)
                fields = delivery_fields(consumer.sub.name, deliveries[0], events[0])
                fields.update(error=repr(exc), outcome="dropped", batch=len(deliveries))
                log.error(
                    "%s: a batch of %d from %s failed with %r; dropped (at most once)",
                    consumer.sub.name,
                    len(deliveries),
                    described(fields),
                    exc,
                    extra={EXTRA: fields},
                )
                for d in deliveries:
                    consumer.after(d, False)
                return
            for d, event in items:
                retry = await consumer.failures.failed(d, exc, event)
                consumer.after(d, retry)
            return
        if consumer.timing:  # each event of the batch took the batch's time
            seconds = time.perf_counter() - started
            for d, event in items:
                consumer.observers.handled(consumer.sub.name, d, event, seconds)
        for d in deliveries:
            if not at_most_once:
                consumer.flow.release(d)
                await d.ack()
                consumer.failures.succeeded(d)
            consumer.after(d, False)
        consumer.stats.handled += len(deliveries)

    async def _drop_exhausted(self, items: list[Item]) -> list[Item]:
        """Dead-letter events delivered beyond ``max_attempts`` (their handlings died)."""
        consumer = self.consumer
        limit = consumer.handling.max_attempts
        keep = []
        for d, event in items:
            if d.attempt > limit:
                await consumer.failures.dead_letter(d, AttemptsExhausted(d.attempt, limit), event)
                consumer.after(d, False)
            else:
                keep.append((d, event))
        return keep
