"""Prometheus metrics of an App: events published, handled, failed, retried, dead-lettered.

Needs the ``metrics`` extra (``pip install 'tidings[metrics]'``). Everything is
registered through the App's public API::

    metrics = Metrics()
    metrics.install(app)              # before app.start()
    async with app, metrics.track_lag(app):
        ...

Labels are the topic, the event type and the subscription's consumer group.
Counting an event adds to plain numbers kept per label values
(:mod:`tidings._tally`), about a microsecond; a scrape renders them, in its own
thread, through a registry collector. Consumer lag is read from brokers that
are :class:`~tidings.inspection.Inspectable` by a task on the event loop
(never from the scrape thread) while :meth:`Metrics.track_lag` is entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from tidings._tally import Tally
from tidings.app import App
from tidings.broker import Delivery
from tidings.context import Context
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.hooks import Observer
from tidings.inspection import Inspectable
from tidings.middleware import Handle, Outgoing, PublishFn

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - exercised without the extra only
    raise ConfigurationError(
        "tidings.metrics needs prometheus-client: pip install 'tidings[metrics]'"
    ) from None

__all__ = ["UNKNOWN_TYPE", "Metrics"]

log = logging.getLogger("tidings.metrics")

_EVENT = ["topic", "type", "group"]
#: The type label of a message that could not be decoded into an event.
UNKNOWN_TYPE = "unknown"


class Metrics:
    """The tidings metrics, collected into one Prometheus registry (default: the global one).

    Create one per registry: registering the metric names twice raises.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.tally = Tally()
        self.registry.register(_Collector(self.tally))

    def install(self, app: App) -> None:
        """Count ``app``'s events: a handler middleware, a publish middleware and an observer.

        Call it before the app starts. The handler middleware is added where the
        call puts it: install first to time the other middleware too.
        """
        app.add_middleware(self.measure)
        app.add_publish_middleware(self.count_published)
        app.add_observer(_Settlements(self.tally, app))

    # -- the per-event paths -------------------------------------------------------

    def measure(self, next_handle: Handle) -> Handle:
        """Handler middleware: handlers in flight, duration, handled or failed."""
        tally = self.tally
        running = tally.running

        async def handle(ctx: Context) -> list[Event]:
            delivery = ctx.delivery
            group = delivery.group
            running[group] = running.get(group, 0) + 1
            started = time.perf_counter()
            try:
                outputs = await next_handle(ctx)
            except Exception:
                _count(tally, ctx, time.perf_counter() - started, failed=True)
                raise
            else:
                _count(tally, ctx, time.perf_counter() - started, failed=False)
                return outputs
            finally:
                running[group] -= 1

        return handle

    def count_published(self, next_publish: PublishFn) -> PublishFn:
        """Publish middleware: counts each event once the broker took it."""
        published = self.tally.published

        async def publish(outgoing: Outgoing) -> None:
            await next_publish(outgoing)
            topic = outgoing.topic
            for event in outgoing.events:
                key = (topic, event.type)
                published[key] = published.get(key, 0) + 1

        return publish

    # -- consumer lag --------------------------------------------------------------

    async def refresh_lag(self, app: App) -> None:
        """Read the lag of ``app``'s consumer groups once (nothing if the broker cannot tell)."""
        broker = app.broker
        if not isinstance(broker, Inspectable):
            return
        groups = {s.group for s in app.subscriptions}
        self.tally.lag = {
            (info.name, p.topic, str(p.partition)): p.lag
            for info in await broker.list_groups()
            if info.name in groups
            for p in info.partitions
        }

    @contextlib.asynccontextmanager
    async def track_lag(self, app: App, interval: float = 5.0) -> AsyncIterator[None]:
        """While entered, refresh the lag gauge every ``interval`` seconds (app started)."""
        if interval <= 0:
            raise ConfigurationError(f"the lag interval must be positive, not {interval!r}")
        task = asyncio.create_task(self._track(app, interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _track(self, app: App, interval: float) -> None:
        while True:
            try:
                await self.refresh_lag(app)
            except Exception as exc:
                if app.health.status == "stopped":
                    return  # the broker closed under the read: nothing to report
                log.warning("consumer lag not read: %r", exc)  # a hiccup: try again later
            await asyncio.sleep(interval)


def _count(tally: Tally, ctx: Context, seconds: float, *, failed: bool) -> None:
    delivery = ctx.delivery
    topic, group = delivery.topic, delivery.group
    for event in ctx.events:  # one, or a batch
        counts = tally.event((topic, event.type, group))
        if failed:
            counts.failed += 1
        else:
            counts.handled += 1
        counts.observe(seconds)


class _Settlements(Observer):
    """Counts retries and dead letters, whose hooks see the delivery, not the event."""

    def __init__(self, tally: Tally, app: App) -> None:
        self.tally = tally
        self.app = app

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        self.tally.event(self._labels(delivery)).retried += 1

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self.tally.event(self._labels(delivery)).dead_lettered += 1

    def _labels(self, delivery: Delivery) -> tuple[str, str, str]:
        # Failures are rare: decoding the type again is cheaper than tracking it.
        try:
            type_ = self.app.codec.decode(delivery.value, delivery.headers).type
        except Exception:
            type_ = UNKNOWN_TYPE
        return delivery.topic, type_, delivery.group


class _Collector(Collector):
    """Renders the tally as Prometheus metrics, in the scrape's thread."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def describe(self) -> list[Metric]:
        return list(_families())

    def collect(self) -> list[Metric]:
        tally = self.tally
        (published, handled, failed, retried, dead_lettered, duration, in_flight, lag) = _families()
        for (topic, type_), count in list(tally.published.items()):
            published.add_metric([topic, type_], count)
        for key, counts in list(tally.events.items()):
            labels = list(key)
            handled.add_metric(labels, counts.handled)
            failed.add_metric(labels, counts.failed)
            retried.add_metric(labels, counts.retried)
            dead_lettered.add_metric(labels, counts.dead_lettered)
            duration.add_metric(labels, counts.cumulative(), counts.seconds)
        for group, running in list(tally.running.items()):
            in_flight.add_metric([group], running)
        for where, messages in tally.lag.items():  # never changed, only replaced
            lag.add_metric(list(where), messages)
        return [published, handled, failed, retried, dead_lettered, duration, in_flight, lag]


def _families() -> tuple[
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
]:
    return (
        CounterMetricFamily(
            "tidings_events_published",
            "Events published, follow-ups included.",
            labels=["topic", "type"],
        ),
        CounterMetricFamily(
            "tidings_events_handled", "Handler calls that returned.", labels=_EVENT
        ),
        CounterMetricFamily("tidings_events_failed", "Handler calls that raised.", labels=_EVENT),
        CounterMetricFamily(
            "tidings_events_retried",
            "Failed attempts given back to be delivered again.",
            labels=_EVENT,
        ),
        CounterMetricFamily(
            "tidings_events_dead_lettered",
            "Events stored in their dead-letter topic.",
            labels=_EVENT,
        ),
        HistogramMetricFamily(
            "tidings_handler_duration_seconds",
            "Time in the handler (and the middleware inside this one), whatever the outcome.",
            labels=_EVENT,
        ),
        GaugeMetricFamily(
            "tidings_handlers_in_flight", "Handler calls running now.", labels=["group"]
        ),
        GaugeMetricFamily(
            "tidings_consumer_lag",
            "Messages stored and not yet committed by the group (where the broker tells).",
            labels=["group", "topic", "partition"],
        ),
    )
