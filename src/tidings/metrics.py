"""Prometheus metrics of an App: events published, handled, failed, retried, dead-lettered.

Needs the ``metrics`` extra (``pip install 'tidings[metrics]'``). Everything is
registered through the App's public API::

    metrics = Metrics()
    metrics.install(app)              # before app.start()
    async with app, metrics.track_lag(app):
        ...

Labels are the topic, the event type and the subscription's consumer group;
labelled children are cached, so counting an event costs a dict lookup and a
few increments. Consumer lag is read from brokers that are
:class:`~tidings.inspection.Inspectable` by a task on the event loop (never
from the scrape thread) while :meth:`Metrics.track_lag` is entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from tidings.app import App
from tidings.broker import Delivery
from tidings.context import Context
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.hooks import Observer
from tidings.inspection import Inspectable
from tidings.middleware import Handle, Outgoing, PublishFn

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError:  # pragma: no cover - exercised without the extra only
    raise ConfigurationError(
        "tidings.metrics needs prometheus-client: pip install 'tidings[metrics]'"
    ) from None

__all__ = ["Metrics"]

log = logging.getLogger("tidings.metrics")

_EVENT = ("topic", "type", "group")
#: The type label of a message that could not be decoded into an event.
UNKNOWN_TYPE = "unknown"


class Metrics:
    """The tidings metrics in one Prometheus registry (default: the global one).

    Create one per registry: the metric names are registered on construction.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.published = Counter(
            "tidings_events_published",
            "Events published, follow-ups included.",
            ("topic", "type"),
            registry=registry,
        )
        self.handled = Counter(
            "tidings_events_handled", "Handler calls that returned.", _EVENT, registry=registry
        )
        self.failed = Counter(
            "tidings_events_failed", "Handler calls that raised.", _EVENT, registry=registry
        )
        self.retried = Counter(
            "tidings_events_retried",
            "Failed attempts given back to be delivered again.",
            _EVENT,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "tidings_events_dead_lettered",
            "Events stored in their dead-letter topic.",
            _EVENT,
            registry=registry,
        )
        self.duration = Histogram(
            "tidings_handler_duration_seconds",
            "Time in the handler (and the middleware inside this one), whatever the outcome.",
            _EVENT,
            registry=registry,
        )
        self.in_flight = Gauge(
            "tidings_handlers_in_flight",
            "Handler calls running now.",
            ("group",),
            registry=registry,
        )
        self.lag = Gauge(
            "tidings_consumer_lag",
            "Messages stored and not yet committed by the group (where the broker tells).",
            ("group", "topic", "partition"),
            registry=registry,
        )
        self._handling: dict[tuple[str, str, str], tuple[Counter, Counter, Histogram]] = {}
        self._in_flight: dict[str, Gauge] = {}
        self._published: dict[tuple[str, str], Counter] = {}

    def install(self, app: App) -> None:
        """Count ``app``'s events: a handler middleware, a publish middleware and an observer.

        Call it before the app starts. The handler middleware is added where the
        call puts it: install first to time the other middleware too.
        """
        app.add_middleware(self.measure)
        app.add_publish_middleware(self.count_published)
        app.add_observer(_Settlements(self, app))

    # -- the per-event paths -------------------------------------------------------

    def measure(self, next_handle: Handle) -> Handle:
        """Handler middleware: in-flight gauge, duration, handled or failed."""

        async def handle(ctx: Context) -> list[Event]:
            delivery = ctx.delivery
            group = delivery.group
            gauge = self._in_flight.get(group) or self._group_gauge(group)
            gauge.inc()
            started = time.perf_counter()
            try:
                outputs = await next_handle(ctx)
            except Exception:
                self._after(ctx, time.perf_counter() - started, failed=True)
                raise
            else:
                self._after(ctx, time.perf_counter() - started, failed=False)
                return outputs
            finally:
                gauge.dec()

        return handle

    def _after(self, ctx: Context, seconds: float, *, failed: bool) -> None:
        delivery = ctx.delivery
        topic, group = delivery.topic, delivery.group
        for event in ctx.events:
            key = (topic, event.type, group)
            children = self._handling.get(key) or self._event_children(key)
            handled, failures, duration = children
            (failures if failed else handled).inc()
            duration.observe(seconds)

    def count_published(self, next_publish: PublishFn) -> PublishFn:
        """Publish middleware: counts each event once the broker took it."""

        async def publish(outgoing: Outgoing) -> None:
            await next_publish(outgoing)
            topic = outgoing.topic
            for event in outgoing.events:
                key = (topic, event.type)
                counter = self._published.get(key) or self._published_counter(key)
                counter.inc()

        return publish

    def _event_children(self, key: tuple[str, str, str]) -> tuple[Counter, Counter, Histogram]:
        children = (
            self.handled.labels(*key),
            self.failed.labels(*key),
            self.duration.labels(*key),
        )
        self._handling[key] = children
        return children

    def _group_gauge(self, group: str) -> Gauge:
        gauge = self._in_flight[group] = self.in_flight.labels(group)
        return gauge

    def _published_counter(self, key: tuple[str, str]) -> Counter:
        counter = self._published[key] = self.published.labels(*key)
        return counter

    # -- consumer lag --------------------------------------------------------------

    async def refresh_lag(self, app: App) -> None:
        """Read the lag of ``app``'s consumer groups once (nothing if the broker cannot tell)."""
        broker = app.broker
        if not isinstance(broker, Inspectable):
            return
        groups = {s.group for s in app.subscriptions}
        for info in await broker.list_groups():
            if info.name in groups:
                for partition in info.partitions:
                    self.lag.labels(info.name, partition.topic, str(partition.partition)).set(
                        partition.lag
                    )

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


class _Settlements(Observer):
    """Counts retries and dead letters, whose hooks see the delivery, not the event."""

    def __init__(self, metrics: Metrics, app: App) -> None:
        self.metrics = metrics
        self.app = app

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        self.metrics.retried.labels(*self._labels(delivery)).inc()

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self.metrics.dead_lettered.labels(*self._labels(delivery)).inc()

    def _labels(self, delivery: Delivery) -> tuple[str, str, str]:
        # Failures are rare: decoding the type again is cheaper than tracking it.
        try:
            type_ = self.app.codec.decode(delivery.value, delivery.headers).type
        except Exception:
            type_ = UNKNOWN_TYPE
        return delivery.topic, type_, delivery.group
