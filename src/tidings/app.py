"""The App: routing table, subscriptions, middleware and lifecycle around one broker."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

from tidings._consumer import Consumer, ConsumerStats
from tidings._handler import HandlerSpec
from tidings.broker import Broker, Message, MultiTopicPublisher, Transactional
from tidings.brokers import from_url, redact_url
from tidings.codec import Codec
from tidings.errors import ConfigurationError, EventTooLargeError
from tidings.event import Event
from tidings.filters import FilterSpec, compile_filter
from tidings.middleware import (
    HandlerMiddleware,
    Outgoing,
    PublishFn,
    PublishMiddleware,
    build_stack,
)
from tidings.payload import payload_info
from tidings.retry import RetryPolicy
from tidings.routing import Router
from tidings.settings import default_broker_url
from tidings.subscription import DeliveryGuarantee, Ordering, Subscription

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "App"]

log = logging.getLogger("tidings.app")
# Where publish middleware delivers follow-ups that are to be committed atomically.
_commit_buffer: ContextVar[list[tuple[str, Message]]] = ContextVar("tidings_commit_buffer")
F = TypeVar("F", bound=Callable[..., Any])
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
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an App needs a non-empty name")
        if max_event_size < 1:
            raise ConfigurationError("max_event_size must be >= 1")
        self.name = name
        self.source = source or f"/{name}"
        self.codec = codec or Codec()
        self.max_event_size = max_event_size
        self.drain_timeout = drain_timeout
        self.broker: Broker
        self.broker_url: str | None
        self._owns_broker: bool
        self._state: _State = "new"
        self.set_broker(broker)
        self.router = Router()
        self._subscriptions: list[Subscription] = []
        self._specs: dict[str, HandlerSpec] = {}
        self._consumers: list[Consumer] = []
        self._middleware: list[HandlerMiddleware] = []
        self._publish_middleware: list[PublishMiddleware] = []
        self._publish: PublishFn = self._send
        self._publish_for_commit: PublishFn = self._collect
        self._connect_lock = asyncio.Lock()

    def set_broker(self, broker: str | Broker | None) -> None:
        """Use another broker (URL or instance; None = ``TIDINGS_BROKER``). Only before start."""
        self._check_not_started("a broker")
        if broker is None:
            broker = default_broker_url()
        self._owns_broker = isinstance(broker, str)
        self.broker_url = redact_url(broker) if isinstance(broker, str) else None
        self.broker = from_url(broker) if isinstance(broker, str) else broker

    def __repr__(self) -> str:
        return f"<App {self.name!r} broker={self.broker_url or self.broker!r} {self._state}>"

    # -- declaration -----------------------------------------------------------

    def route(self, payload_type: type | str, topic: str) -> None:
        """Publish payloads of ``payload_type`` (a class or a type name) to ``topic``."""
        self.router.add(payload_type, topic)

    def _check_not_started(self, what: str) -> None:
        if self._state != "new":
            raise ConfigurationError(
                f"cannot add {what}: app {self.name!r} has already started "
                "(an app runs once; build a new one to run again)"
            )

    def add_middleware(self, middleware: HandlerMiddleware) -> None:
        """Wrap every handler; the first added runs outermost. Only before start."""
        self._check_not_started("middleware")
        self._middleware.append(middleware)

    def add_publish_middleware(self, middleware: PublishMiddleware) -> None:
        """Wrap every publish (including follow-ups). Only before the first publish."""
        self._check_not_started("publish middleware")
        self._publish_middleware.append(middleware)

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
        middleware: Sequence[HandlerMiddleware] = (),
        name: str | None = None,
        _localns: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """Register ``handler`` on ``topics``; :meth:`subscribe` is the decorator form.

        ``group`` defaults to ``<app name>.<handler name>``, so each handler
        sees every event; handlers sharing a group compete for events.
        """
        self._check_not_started("subscriptions")
        topic_list = (topics,) if isinstance(topics, str) else tuple(topics)
        handler_name = getattr(handler, "__name__", type(handler).__name__)
        sub_name = name or f"{self.name}.{handler_name}"
        if sub_name in self._specs:
            raise ConfigurationError(
                f"a subscription named {sub_name!r} already exists; pass name=..."
            )
        if delivery == "exactly_once":
            self._check_exactly_once()
        spec = HandlerSpec(handler, _localns)
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
            middleware=tuple(middleware),
        )
        self._specs[sub_name] = spec
        self._subscriptions.append(subscription)
        return subscription

    def _check_exactly_once(self) -> None:
        if not (self.broker.capabilities.exactly_once and isinstance(self.broker, Transactional)):
            raise ConfigurationError(
                f"{type(self.broker).__name__} cannot commit a handling atomically, so "
                "delivery='exactly_once' is refused; use 'at_least_once' with an "
                "idempotent handler (dedupe on the event id), or the embedded broker"
            )

    def subscribe(self, topics: str | Sequence[str], **options: Any) -> Callable[[F], F]:
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
        **attributes: Any,
    ) -> Event:
        """The event ``publish`` would send for ``payload`` (an Event passes through)."""
        if isinstance(payload, Event):
            if key is not None or type is not None or attributes:
                changes = dict(attributes)
                if key is not None:
                    changes["partitionkey"] = key
                if type is not None:
                    changes["type"] = type
                return payload.replace(**changes)
            return payload
        if type is None:
            info = payload_info(payload)
            type = info.name
            attributes.setdefault("schemaversion", info.version)
        return Event(type=type, source=self.source, data=payload, partitionkey=key, **attributes)

    async def publish(
        self,
        payload: Any,
        *,
        topic: str | None = None,
        key: str | None = None,
        delay: float | None = None,
        deliver_at: float | datetime | None = None,
        **attributes: Any,
    ) -> Event:
        """Publish one event; return it once the broker has accepted it.

        ``payload`` is a payload object (pydantic model, dataclass, dict with
        ``type=``) or an :class:`Event`. ``key`` sets ``partitionkey`` (order
        is kept per key). ``delay`` (seconds) or ``deliver_at`` (a time)
        postpones delivery. Other keywords are CloudEvents attributes.
        """
        event = self.event(payload, key=key, **attributes)
        target = topic or self.router.topic_for(payload, event)
        if self._state != "started" and self._state != "connected":
            await self._ensure_connected()
        when = None if delay is None and deliver_at is None else _when(delay, deliver_at)
        await self._publish(Outgoing(target, (event,), when))
        return event

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
        for payload in payloads:
            event = self.event(payload)
            events.append(event)
            grouped.setdefault(topic or self.router.topic_for(payload, event), []).append(event)
        await self._ensure_connected()
        outgoing = [Outgoing(target, batch) for target, batch in grouped.items()]
        if len(outgoing) > 1 and isinstance(self.broker, MultiTopicPublisher):
            messages: dict[str, list[Message]] = {}
            for target, message in await self._capture(outgoing):
                messages.setdefault(target, []).append(message)
            await self.broker.publish_many(list(messages.items()))
        else:
            for item in outgoing:
                await self._publish(item)
        return events

    def _encode(self, outgoing: Outgoing) -> list[Message]:
        messages = []
        limit = self.max_event_size
        codec = self.codec
        structured = codec.mode == "structured"
        for event in outgoing.events:
            if structured:  # the common case, without the (body, headers) tuple
                value = codec.encode_structured(event)
                headers: dict[str, str] = {}
                size = len(value)
            else:
                value, headers = codec.encode(event)
                size = len(value) + sum(len(k) + len(v) for k, v in headers.items())
            if size > limit:
                raise EventTooLargeError(size, limit)
            messages.append(Message(value, headers, event.key, outgoing.deliver_at))
        return messages

    async def _send(self, outgoing: Outgoing) -> None:
        await self.broker.publish(outgoing.topic, self._encode(outgoing))

    def _by_topic(self, events: list[Event]) -> dict[str, list[Event]]:
        grouped: dict[str, list[Event]] = {}
        for event in events:
            grouped.setdefault(self.router.topic_for(event.data, event), []).append(event)
        return grouped

    async def _publish_events(self, events: list[Event]) -> None:
        if events:
            for target, batch in self._by_topic(events).items():
                await self._publish(Outgoing(target, batch))

    async def _collect(self, outgoing: Outgoing) -> None:
        _commit_buffer.get().extend((outgoing.topic, m) for m in self._encode(outgoing))

    async def _prepare_commit(self, events: list[Event]) -> list[tuple[str, Message]]:
        """Follow-ups as messages for an atomic commit (through the publish middleware)."""
        if not events:
            return []
        return await self._capture(
            [Outgoing(target, batch) for target, batch in self._by_topic(events).items()]
        )

    async def _capture(self, outgoing: list[Outgoing]) -> list[tuple[str, Message]]:
        """Run ``outgoing`` through the publish middleware, collecting the messages
        instead of sending them (for a broker call that stores them all at once)."""
        if not self._publish_middleware:  # nothing to run: encode directly
            return [(o.topic, message) for o in outgoing for message in self._encode(o)]
        buffer: list[tuple[str, Message]] = []
        token = _commit_buffer.set(buffer)
        try:
            for item in outgoing:
                await self._publish_for_commit(item)
        finally:
            _commit_buffer.reset(token)
        return buffer

    def _follow_ups(
        self, parent: Event, result: Any, emitted: Sequence[tuple[Any, dict[str, Any]]] = ()
    ) -> list[Event]:
        """Turn a handler's return value and emitted payloads into follow-up events."""
        if result is None and not emitted:
            return []
        items: list[tuple[Any, dict[str, Any]]] = []
        if result is not None:
            if isinstance(result, list | tuple):
                items.extend((r, {}) for r in result if r is not None)
            else:
                items.append((result, {}))
        items.extend(emitted)
        out = []
        for payload, attributes in items:
            if isinstance(payload, Event):
                out.append(payload)
            else:
                out.append(parent.derive(payload, source=self.source, **attributes))
        return out

    # -- lifecycle ---------------------------------------------------------------

    async def _ensure_connected(self) -> None:
        if self._state != "new":
            if self._state == "stopped":
                raise ConfigurationError(f"app {self.name!r} is stopped")
            return
        async with self._connect_lock:
            if self._state == "new":
                await self.broker.connect()
                self._publish = build_stack(self._publish, self._publish_middleware)
                self._publish_for_commit = build_stack(
                    self._publish_for_commit, self._publish_middleware
                )
                self._state = "connected"

    async def start(self) -> None:
        """Connect and start every subscription."""
        if self._state == "started":
            return
        if any(s.delivery == "exactly_once" for s in self._subscriptions):
            self._check_exactly_once()
        await self._ensure_connected()
        self._state = "started"
        try:
            for subscription in self._subscriptions:
                consumer = Consumer(self, subscription, self._specs[subscription.name])
                await consumer.start(self._middleware)
                self._consumers.append(consumer)
        except BaseException:
            await self.stop()
            raise
        log.info("app %s started with %d subscription(s)", self.name, len(self._consumers))

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
    def idle(self) -> bool:
        """True when no subscription holds a fetched, unsettled or retrying event."""
        return all(c.idle for c in self._consumers)

    def stats(self) -> dict[str, ConsumerStats]:
        """Counters per subscription name."""
        return {c.sub.name: c.stats for c in self._consumers}

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set or SIGINT/SIGTERM arrives, then stop gracefully.

        A second signal during the drain cancels the handlers still running
        (their events are not acked and will be redelivered).
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
                await stop.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def run(self) -> None:
        """Block running the app until Ctrl-C or SIGTERM, then drain and exit."""
        asyncio.run(self.serve())


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
