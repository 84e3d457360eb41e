"""Run apps against one in-memory broker, wait until quiet, and assert on what happened.

::

    async with Harness(app) as harness:
        await app.publish(OrderPlaced(order_id="ORD-1", sku="ABC", quantity=2))
        await harness.drain()
        harness.assert_handled("OrderPlaced", count=1)
        assert harness.published(type="InventoryReserved")
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tidings.app import App
from tidings.broker import Message
from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.codec import Codec
from tidings.context import Context
from tidings.deadletter import DLQ_SUFFIX, DeadLetter, dead_letter_topic
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.middleware import Handle

__all__ = ["Failure", "Handled", "Harness"]


@dataclass(frozen=True)
class Handled:
    """One successful handling: which subscription, which event, what followed."""

    subscription: str
    event: Event
    attempt: int
    follow_ups: list[Event]


@dataclass(frozen=True)
class Failure:
    """One failed attempt."""

    subscription: str
    event: Event
    attempt: int
    error: BaseException


class Harness:
    """Runs ``apps`` on a shared in-memory broker and records their traffic.

    Each app's broker is replaced by a client of one private
    :class:`~tidings.brokers.memory.MemoryHub`; handlings are recorded by a
    middleware added before start, and published events are read back from
    the hub.
    """

    def __init__(self, *apps: App, partitions: int = 4) -> None:
        self.hub = MemoryHub(default_partitions=partitions)
        self.apps = list(apps)
        self._handled: list[Handled] = []
        self._failures: list[Failure] = []
        self._brokers: list[MemoryBroker] = []
        #: What each app had before: restored when the harness stops (a module-level
        #: app can then be tested again, or run for real).
        self._originals = [app._broker_source for app in apps]
        for app in apps:
            broker = MemoryBroker(self.hub)
            self._brokers.append(broker)
            app.set_broker(broker)
            app.add_middleware(self._record_handle)

    # -- recording middleware -------------------------------------------------

    def _record_handle(self, next_handle: Handle) -> Handle:
        async def handle(ctx: Context) -> list[Event]:
            try:
                outputs = await next_handle(ctx)
            except Exception as exc:
                for event in ctx.events:
                    self._failures.append(Failure(ctx.subscription, event, ctx.attempt, exc))
                raise
            for event in ctx.events:
                self._handled.append(Handled(ctx.subscription, event, ctx.attempt, outputs))
            return outputs

        return handle

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        for app in self.apps:
            await app.start()

    async def stop(self) -> None:
        for app in self.apps:
            await app.stop()
        for broker in self._brokers:
            await broker.close()
        for app, original in zip(self.apps, self._originals, strict=True):
            app.remove_middleware(self._record_handle)
            app.set_broker(original)

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def quiet(self) -> bool:
        """True when every group caught up and no app holds an event (or a pending retry)."""
        return self.hub.is_idle() and all(app.idle for app in self.apps)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until quiet: everything published was handled, retried or dead-lettered.

        Scheduled retries and delayed events are waited for. Raises
        ``TimeoutError`` if the apps are still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 3:
            await asyncio.sleep(0)
            if self.quiet():
                calm += 1
                continue
            calm = 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"apps still busy after {timeout}s: {self._busy_report()}")
            await asyncio.sleep(0.002)

    def _busy_report(self) -> str:
        parts = []
        for (group, topic), state in self.hub.groups.items():
            if state.members and state.backlog():
                parts.append(f"group {group!r} has {state.backlog()} unsettled on {topic!r}")
        for app in self.apps:
            for consumer in app._consumers:
                if not consumer.idle:
                    parts.append(f"{consumer.sub.name} holds events")
        return "; ".join(parts) or "unknown"

    # -- what happened ----------------------------------------------------------

    def published(self, *, type: str | None = None, topic: str | None = None) -> list[Event]:
        """Events stored in the broker (follow-ups included), optionally filtered.

        Read from the broker itself, so an exactly-once follow-up dropped as a
        duplicate is not listed. Dead-letter topics and undecodable messages
        are left out.
        """
        stored: list[tuple[float, Message]] = []
        for name, found in self.hub.topics.items():
            if (topic is not None and name != topic) or name.endswith(DLQ_SUFFIX):
                continue
            for records in found.partitions:
                stored.extend((record.published_at, record.message) for record in records)
        stored.sort(key=lambda item: item[0])
        codec = self.apps[0].codec if self.apps else Codec()
        events = []
        for _, message in stored:
            try:
                event = codec.decode(message.value, message.headers)
            except DecodeError:
                continue
            if type is None or event.type == type:
                events.append(event)
        return events

    def handled(self, *, type: str | None = None, subscription: str | None = None) -> list[Handled]:
        """Successful handlings, optionally filtered by event type or subscription name."""
        return [
            h
            for h in self._handled
            if (type is None or h.event.type == type)
            and (subscription is None or h.subscription == subscription)
        ]

    def failures(self, *, subscription: str | None = None) -> list[Failure]:
        """Failed attempts (each retry that failed, and the last one)."""
        return [f for f in self._failures if subscription is None or f.subscription == subscription]

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        """The dead letters of ``topic`` (read from ``<topic>.dlq``)."""
        return [
            DeadLetter.from_message(message)
            for _, _, message in self.hub.records(dead_letter_topic(topic))
        ]

    def assert_published(self, type: str, *, count: int | None = None, **data: Any) -> list[Event]:
        """Assert events of ``type`` were published (``count`` of them, whose data has ``data``)."""
        found = [e for e in self.published(type=type) if _data_matches(e, data)]
        _check_count(f"published events of type {type!r}", found, count, self.published())
        return found

    def assert_handled(self, type: str, *, count: int | None = None, **data: Any) -> list[Handled]:
        """Assert events of ``type`` were handled successfully (``count`` times)."""
        found = [h for h in self.handled(type=type) if _data_matches(h.event, data)]
        _check_count(f"handled events of type {type!r}", found, count, self._handled)
        return found


def _data_matches(event: Event, expected: dict[str, Any]) -> bool:
    if not expected:
        return True
    data = event.data
    for name, value in expected.items():
        actual = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
        if actual != value:
            return False
    return True


def _check_count(what: str, found: list[Any], count: int | None, everything: list[Any]) -> None:
    if count is None and not found:
        raise AssertionError(f"no {what}; saw {len(everything)} in all")
    if count is not None and len(found) != count:
        raise AssertionError(f"expected {count} {what}, found {len(found)}")
