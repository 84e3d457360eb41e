"""The App: routing table, subscriptions, middleware and lifecycle around one broker."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack

from tidings._consumer import Consumer
from tidings._handler import HandlerSpec
from tidings._recorder import OutcomeRecorder
from tidings.broker import Broker, WireFormat
from tidings.brokers import from_url, redact_url
from tidings.codec import Codec
from tidings.errors import ConfigurationError, SubscriptionFailedError
from tidings.event import Event
from tidings.exactly_once import ExactlyOnce, for_broker
from tidings.filters import FilterSpec, compile_filter
from tidings.health import Health
from tidings.hooks import Observer, Observers
from tidings.inspection import LocalStorage
from tidings.lifecycle import Hook, Lifecycle
from tidings.middleware import HandlerMiddleware, Outgoing, PublishMiddleware
from tidings.options import EventAttributes, SubscriptionOptions
from tidings.payload import decode_payload
from tidings.publisher import Publisher
from tidings.requests import Requests
from tidings.retry import RetryPolicy
from tidings.routing import Router, is_pattern
from tidings.schemas.contracts import Enforcement, Schemas
from tidings.settings import default_broker_url
from tidings.stats import ConsumerStats
from tidings.subscription import DeliveryGuarantee, Ordering, Subscription
from tidings.supervision import Supervision
from tidings.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "App"]

log = logging.getLogger("tidings.app")
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
H = TypeVar("H", bound=Hook)
DEFAULT_MAX_EVENT_SIZE = 1024 * 1024
_State = Literal["new", "connected", "started", "stopped"]


class App:
    """An event-driven service: publishes events and runs subscriptions on one broker.

    >>> app = App("inventory", broker="memory://")
    >>> app.name
    'inventory'

    ``broker`` is a URL (``memory://``, ``sqlite:///./shop.db`` ...) or a
    :class:`~tidings.broker.Broker`; it defaults to ``TIDINGS_BROKER``.
    ``source`` is the CloudEvents ``source`` of the events the app publishes
    (default ``/<name>``). Use ``async with app:`` (start, then stop with a
    graceful drain) or ``app.run()``.

    ``record_handlings``: store the outcome of every handling attempt on the
    internal topic ``tidings.handlings`` (for ``tidings trace``); by default
    only on a broker keeping local storage (the embedded one).

    ``schemas``: what the App checks against the schema registry
    (:class:`~tidings.schemas.Schemas`; by default it validates events of
    registered types on publish and on consume; ``False``: nothing).
    """

    def __init__(
        self,
        name: str,
        broker: str | Broker | None = None,
        *,
        source: str | None = None,
        codec: Codec | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        drain_timeout: float = 30.0,
        exactly_once: ExactlyOnce | None = None,
        supervision: Supervision | None = None,
        tracer_provider: TracerProvider | None = None,
        record_handlings: bool | None = None,
        schemas: Schemas | bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an App needs a non-empty name")
        if max_event_size < 1:
            raise ConfigurationError("max_event_size must be >= 1")
        self.name = name
        self.source = source or f"/{name}"
        self.drain_timeout = drain_timeout
        self.router = Router()
        self.broker_url: str | None
        self._owns_broker: bool
        self._state: _State = "new"
        self._exactly_once = exactly_once
        self.supervision = supervision or Supervision()
        self.broker = self._resolve_broker(broker)
        #: The codec was chosen by the user, not derived from the broker's wire format.
        self._codec_given = codec is not None
        self.publisher = Publisher(
            self.broker,
            source=self.source,
            codec=codec or _default_codec(self.broker),
            router=self.router,
            max_event_size=max_event_size,
        )
        self._subscriptions: list[Subscription] = []
        self._specs: dict[str, HandlerSpec] = {}
        self._consumers: list[Consumer] = []
        self._middleware: list[HandlerMiddleware] = []
        self._observers: list[Observer] = []
        self._failed = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._requests: Requests | None = None
        self._tracer_provider = tracer_provider
        self._tracing: Tracing | None = None
        self._lifecycle = Lifecycle()
        self._record_handlings = record_handlings
        self._schemas = Schemas() if schemas is True else schemas or None
        self._enforcement: Enforcement | None = None
        self._recorder: OutcomeRecorder | None = None

    @property
    def codec(self) -> Codec:
        return self.publisher.codec

    @property
    def max_event_size(self) -> int:
        return self.publisher.max_event_size

    def set_broker(self, broker: str | Broker | None) -> None:
        """Use another broker (URL or instance; None = ``TIDINGS_BROKER``). Only before start."""
        self._check_not_started("a broker")
        self.broker = self.publisher.broker = self._resolve_broker(broker)
        if not self._codec_given:  # the new broker's own binding, as the constructor does
            self.publisher.codec = _default_codec(self.broker)

    def _resolve_broker(self, broker: str | Broker | None) -> Broker:
        self._broker_source = broker  # what a restart connects to again
        if broker is None:
            broker = default_broker_url()
        self._owns_broker = isinstance(broker, str)
        self.broker_url = redact_url(broker) if isinstance(broker, str) else None
        return from_url(broker) if isinstance(broker, str) else broker

    def __repr__(self) -> str:
        return f"<App {self.name!r} broker={self.broker_url or self.broker!r} {self._state}>"

    # -- declaration -----------------------------------------------------------

    def route(self, payload_type: type | str, topic: str) -> None:
        """Publish payloads of ``payload_type`` (a class or a type name) to ``topic``."""
        self.router.add(payload_type, topic)

    def _check_not_started(self, what: str) -> None:
        if self._state not in ("new", "stopped"):
            raise ConfigurationError(
                f"cannot add {what}: app {self.name!r} is running; add it before start, "
                "or after stop (the next start uses it)"
            )

    def on_startup(self, hook: H) -> H:
        """Decorator: run ``hook`` (async or not) at each start, in order, before any event.

        A failing hook stops the start with :class:`~tidings.errors.StartupError`.
        """
        self._check_not_started("a startup hook")
        return self._lifecycle.add(self._lifecycle.startup, hook)

    def on_shutdown(self, hook: H) -> H:
        """Decorator: run ``hook`` at each stop, in order, after the handlers have drained."""
        self._check_not_started("a shutdown hook")
        return self._lifecycle.add(self._lifecycle.shutdown, hook)

    def add_middleware(self, middleware: HandlerMiddleware) -> None:
        """Wrap every handler; the first added runs outermost. Only before start."""
        self._check_not_started("middleware")
        self._middleware.append(middleware)

    def remove_middleware(self, middleware: HandlerMiddleware) -> None:
        """Take back a handler middleware (while the app is not running)."""
        self._check_not_started("middleware")
        self._middleware.remove(middleware)

    def add_publish_middleware(self, middleware: PublishMiddleware) -> None:
        """Wrap every publish (including follow-ups). Only before the first publish."""
        self._check_not_started("publish middleware")
        self.publisher.add_middleware(middleware)

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer``'s hooks as events are received, handled, retried... Before start."""
        self._check_not_started("an observer")
        self._observers.append(observer)

    def add_subscription(
        self,
        handler: Callable[..., Any],
        topics: str | Sequence[str],
        *,
        group: str | None = None,
        filter: FilterSpec | None = None,
        delivery: DeliveryGuarantee = "at_least_once",
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        ordering: Ordering = "key",
        start: Literal["earliest", "latest"] = "earliest",
        batch_size: int = 100,
        batch_timeout: float = 0.05,
        ack_wait: float = 30.0,
        middleware: Sequence[HandlerMiddleware] = (),
        name: str | None = None,
        replies: bool = False,
        _localns: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """Register ``handler`` on ``topics``; :meth:`subscribe` is the decorator form.

        ``group`` defaults to ``<app name>.<handler name>``, so each handler
        sees every event; handlers sharing a group compete for events. The
        options are described on :class:`~tidings.subscription.Subscription`.
        """
        self._check_not_started("subscriptions")
        topic_list = (topics,) if isinstance(topics, str) else tuple(topics)
        handler_name = getattr(handler, "__name__", type(handler).__name__)
        sub_name = name or f"{self.name}.{handler_name}"
        if sub_name in self._specs:
            raise ConfigurationError(
                f"a subscription named {sub_name!r} already exists; pass name=..."
            )
        self._check_patterns(topic_list)
        spec = HandlerSpec(handler, _localns)
        if delivery == "exactly_once":
            self._check_exactly_once(sub_name, spec)
        subscription = Subscription(
            handler=handler,
            topics=topic_list,
            group=group or sub_name,
            name=sub_name,
            delivery=delivery,
            filter=compile_filter(filter) if filter is not None else None,
            retry=retry or RetryPolicy(),
            concurrency=concurrency,
            prefetch=prefetch if prefetch is not None else max(256, concurrency),
            ordering=ordering,
            start=start,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            ack_wait=ack_wait,
            middleware=tuple(middleware),
            replies=replies,
        )
        self._specs[sub_name] = spec
        self._subscriptions.append(subscription)
        return subscription

    def _check_patterns(self, topics: Sequence[str]) -> None:
        patterns = [t for t in topics if is_pattern(t)]
        if patterns and not self.broker.capabilities.wildcards:
            raise ConfigurationError(
                f"{type(self.broker).__name__} has no wildcard subscriptions, so "
                f"{patterns[0]!r} cannot be subscribed to; name each topic"
            )

    def _check_exactly_once(self, name: str, spec: HandlerSpec) -> None:
        if spec.batch:
            raise ConfigurationError(
                f"{name}: a batch handler cannot be exactly-once (its events would "
                "need one commit together); use a handler taking one event, or "
                "delivery='at_least_once' with an idempotent batch handler"
            )
        self._exactly_once_strategy()

    def _exactly_once_strategy(self) -> ExactlyOnce:
        return self._exactly_once or for_broker(self.broker)

    def subscribe(
        self, topics: str | Sequence[str], **options: Unpack[SubscriptionOptions]
    ) -> Callable[[F], F]:
        """Decorator: ``@app.subscribe("order.events", group="inventory")``.

        Takes the options of :meth:`add_subscription`.
        """
        localns = sys._getframe(1).f_locals

        def decorate(handler: F) -> F:
            self.add_subscription(handler, topics, _localns=localns, **options)
            return handler

        return decorate

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    # -- building and publishing events --------------------------------------------

    def event(
        self,
        payload: Any,
        *,
        key: str | None = None,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> Event:
        """The event ``publish`` would send for ``payload`` (an Event passes through)."""
        return self.publisher.event(payload, key=key, type=type, **attributes)

    async def publish(
        self,
        payload: Any,
        *,
        topic: str | None = None,
        key: str | None = None,
        delay: float | None = None,
        deliver_at: float | datetime | None = None,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> Event:
        """Publish one event; return it once the broker has accepted it.

        ``payload`` is a payload object (pydantic model, dataclass, dict with
        ``type=``) or an :class:`Event`. ``key`` sets ``partitionkey`` (order
        is kept per key). ``delay`` (seconds) or ``deliver_at`` (a time)
        postpones delivery, never early: a broker that cannot schedule gets the
        event at once and its consumers hold it until its time. Other keywords
        are CloudEvents attributes.
        """
        event = self.publisher.event(payload, key=key, type=type, **attributes)
        if topic is not None and topic not in self.publisher.checked_topics:
            self.publisher.check_topic(topic)
        target = topic or self.router.topic_for(payload, event)
        if self._state != "started" and self._state != "connected":
            await self._ensure_connected()
        when = None if delay is None and deliver_at is None else _when(delay, deliver_at)
        await self.publisher.send(Outgoing(target, (event,), when))
        return event

    async def request(
        self,
        payload: Any,
        *,
        topic: str | None = None,
        key: str | None = None,
        reply_type: type[Any] | None = None,
        timeout: float = 5.0,
        type: str | None = None,
        **attributes: Unpack[EventAttributes],
    ) -> Event:
        """Publish a request and return the reply event; see ``docs/request-reply.md``.

        The request carries the ``replyto`` extension (where this App receives
        replies); a handler answers by returning a value or with
        ``ctx.reply``. ``reply_type`` decodes ``reply.data`` into a class, as
        a handler's payload is. ``timeout`` counts from the broker accepting
        the request. Raises :class:`~tidings.errors.RequestTimeout`, or
        :class:`~tidings.errors.RequestFailed` when the handler failed for good.
        """
        if timeout <= 0:
            raise ConfigurationError("a request's timeout must be > 0 seconds")
        if topic is not None:
            self.publisher.check_topic(topic)
        if self._state != "started" and self._state != "connected":
            await self._ensure_connected()
        requests = self.requests
        address = await requests.address()
        attributes["extensions"] = {**attributes.get("extensions", {}), "replyto": address}
        event = self.publisher.event(payload, key=key, type=type, **attributes)
        target = topic or self.router.topic_for(payload, event)
        outgoing = Outgoing(target, (event,))
        reply = await requests.ask(event, target, timeout, lambda: self.publisher.send(outgoing))
        if reply_type is not None:
            reply = reply.replace(data=decode_payload(reply.data, reply_type))
        return reply

    @property
    def requests(self) -> Requests:
        """This App's requests: counts of answered, timed-out, late and outstanding ones."""
        if self._requests is None:
            self._requests = Requests(self.name, self.broker, self.codec)
        return self._requests

    async def publish_batch(
        self, payloads: Iterable[Any], *, topic: str | None = None
    ) -> list[Event]:
        """Publish many events; return them in order.

        Each topic's events go in one broker call; on a broker that can store
        several topics at once (the embedded one), the whole batch is one
        transaction: all stored, or none.
        """
        grouped: dict[str, list[Event]] = {}
        events: list[Event] = []
        if topic is not None:
            self.publisher.check_topic(topic)
        for payload in payloads:
            event = self.publisher.event(payload)
            events.append(event)
            grouped.setdefault(topic or self.router.topic_for(payload, event), []).append(event)
        await self._ensure_connected()
        await self.publisher.publish_batch([Outgoing(t, batch) for t, batch in grouped.items()])
        return events

    # -- lifecycle ---------------------------------------------------------------

    async def _ensure_connected(self) -> None:
        if self._state != "new":
            if self._state == "stopped":
                raise ConfigurationError(f"app {self.name!r} is stopped")
            return
        async with self._connect_lock:
            if self._state == "new":
                await self.broker.connect()
                system = getattr(self.broker, "messaging_system", "tidings")
                self._tracing = tracing = Tracing.configured(self._tracer_provider, system)
                inner: list[PublishMiddleware] = []
                if self._schemas is not None:
                    self._enforcement = await self._schemas.attach(self, self.broker)
                    if self._enforcement is not None and self._enforcement.checks_publish:
                        inner.append(self._enforcement.publish)
                # Tracing goes innermost: the span covers the broker call.
                if tracing is not None:
                    inner.append(tracing.publish)
                self.publisher.build(inner)
                self._state = "connected"

    async def start(self) -> None:
        """Connect, run the startup hooks, and start every subscription.

        An app that was stopped starts again afresh: a new broker connection
        (from its URL) and new consumers; groups resume where they committed.
        """
        if self._state == "started":
            return
        if self._state == "stopped":
            self._reset()
        exactly_once = None
        if any(s.delivery == "exactly_once" for s in self._subscriptions):
            exactly_once = self._exactly_once_strategy()
        self._check_return_routes()
        await self._ensure_connected()
        self._state = "started"
        try:
            await self._lifecycle.start(self._specs[s.name] for s in self._subscriptions)
        except BaseException:
            await self.stop()
            raise
        self._warn_about_key_order()
        tracing = self._tracing
        observers = [*self._observers]
        if tracing is not None:
            observers.append(tracing.observer())
        try:
            if self._subscriptions and self._records_handlings():
                self._recorder = OutcomeRecorder(self.name, self.broker, source=self.source)
                await self._recorder.start()
                observers.append(self._recorder)
            hooks = Observers(observers)
            middleware = self._middleware
            enforcement = self._enforcement
            if enforcement is not None and enforcement.checks_consume:
                middleware = [*middleware, enforcement.handler]  # innermost: next to the handler
            for subscription in self._subscriptions:
                consumer = Consumer(
                    subscription,
                    self._specs[subscription.name],
                    self.publisher,
                    app_name=self.name,
                    exactly_once=exactly_once,
                    observers=hooks,
                    supervision=self.supervision,
                    on_failure=self._consumer_failed,
                )
                await consumer.start(middleware, tracing)
                self._consumers.append(consumer)
        except BaseException:
            await self.stop()
            raise
        log.info("app %s started with %d subscription(s)", self.name, len(self._consumers))

    def _check_return_routes(self) -> None:
        """Refuse a handler whose declared return type has no topic (it would fail each time)."""
        for sub in self._subscriptions:
            if sub.replies:
                continue  # its return values answer requests: they are not routed
            spec = self._specs[sub.name]
            for returned in spec.returns:
                if not self.router.has_route(returned):
                    raise ConfigurationError(
                        f"handler {spec.where} returns {returned.__qualname__}, which has no "
                        f"topic: declare app.route({returned.__qualname__}, 'topic'), or "
                        "ctx.emit(..., topic=...) instead; a handler that answers requests "
                        "says so with replies=True"
                    )

    def _warn_about_key_order(self) -> None:
        if self.broker.capabilities.key_affinity:
            return
        for sub in self._subscriptions:
            if sub.ordering == "key":
                log.warning(
                    "%s: %s does not keep a key on one member of a group; events of a key "
                    "stay in order within this process, not across the group's members",
                    sub.name,
                    type(self.broker).__name__,
                )

    def _reset(self) -> None:
        """Make a stopped app new again (a fresh client of the broker it was given)."""
        if self._owns_broker:
            self.broker = self.publisher.broker = self._resolve_broker(self._broker_source)
        self._consumers = []
        self._failed = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._requests = None
        self._tracing = None
        self._recorder = None
        self._state = "new"

    def _records_handlings(self) -> bool:
        if self._record_handlings is not None:
            return self._record_handlings
        return isinstance(self.broker, LocalStorage)

    def _consumer_failed(self, consumer: Consumer) -> None:
        self._failed.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: no new events, in-flight handlers finish and ack, then close.

        Handlers still running after ``timeout`` (default ``drain_timeout``)
        are cancelled; their events are not acked and will be redelivered.
        """
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        wait = self.drain_timeout if timeout is None else timeout
        await asyncio.gather(*(c.stop(wait) for c in self._consumers))
        if self._recorder is not None:
            await self._recorder.stop()
        if self._requests is not None:
            await self._requests.close()
        if self._state == "started":
            await self._lifecycle.stop()
        self._state = "stopped"
        if self._owns_broker:
            await self.broker.close()
        log.info("app %s stopped", self.name)

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def in_flight(self) -> int:
        """Events taken from the broker and not yet settled, over all subscriptions."""
        return sum(len(c.flow.unsettled) for c in self._consumers)

    @property
    def idle(self) -> bool:
        """True when no subscription holds a fetched, unsettled or retrying event.

        A failed subscription is never idle: see :attr:`health`.
        """
        return all(c.idle for c in self._consumers)

    @property
    def health(self) -> Health:
        """Whether every subscription is running; which ones restart or failed, and why."""
        states = {c.sub.name: c.state for c in self._consumers}
        errors = {c.sub.name: repr(c.failure) for c in self._consumers if c.failure}
        if self._state in ("new", "connected"):
            status: Literal["new", "running", "degraded", "failed", "stopped"] = "new"
        elif errors:
            status = "failed"
        elif self._state == "stopped":
            status = "stopped"
        elif any(state == "restarting" for state in states.values()):
            status = "degraded"
        else:
            status = "running"
        return Health(status, states, errors)

    def stats(self) -> dict[str, ConsumerStats]:
        """Counters per subscription name."""
        return {c.sub.name: c.stats for c in self._consumers}

    def _failure(self) -> SubscriptionFailedError | None:
        for consumer in self._consumers:
            if consumer.failure is not None:
                return SubscriptionFailedError(consumer.sub.name, consumer.failure)
        return None

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set or SIGINT/SIGTERM arrives, then stop gracefully.

        A second signal during the drain cancels the handlers still running
        (their events are not acked and will be redelivered). If a
        subscription fails for good, the app stops and this raises
        :class:`~tidings.errors.SubscriptionFailedError`.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []

        def on_signal() -> None:
            if stop.is_set():
                log.warning("app %s: second signal, cancelling running handlers", self.name)
                for consumer in self._consumers:
                    consumer.abort()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
                pass
        try:
            async with self:
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._failed.wait()),
                ]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        failure = self._failure()
        if failure is not None:
            raise failure

    def run(self) -> None:
        """Block running the app until Ctrl-C or SIGTERM, then drain and exit.

        Raises :class:`~tidings.errors.SubscriptionFailedError` if a
        subscription failed for good (after stopping the app).
        """
        asyncio.run(self.serve())


def _default_codec(broker: Broker) -> Codec:
    """The broker's preferred protocol binding, else CloudEvents structured JSON."""
    return broker.default_codec() if isinstance(broker, WireFormat) else Codec()


def _when(delay: float | None, deliver_at: float | datetime | None) -> float | None:
    if delay is not None and deliver_at is not None:
        raise ConfigurationError("pass either delay or deliver_at, not both")
    if delay is not None:
        if delay < 0:
            raise ConfigurationError("delay must be >= 0")
        return time.time() + delay
    if isinstance(deliver_at, datetime):
        if deliver_at.utcoffset() is None:
            raise ConfigurationError("deliver_at must be timezone-aware")
        return deliver_at.timestamp()
    return deliver_at
