"""The engine behind one subscription: intake, then one job per helper.

* intake and flow control (here, with :class:`~tidings._flow.Flow`): fetch while
  the prefetch bound allows, decode, filter, then admit or hold by key;
* key order (:class:`~tidings._keys.KeySequencer`): at most one event of a key
  in flight, a retry holding back only its own key;
* handling and settlement per guarantee (:mod:`tidings._handling`);
* retry and dead-lettering (:class:`~tidings._failures.Failures`);
* batches (:mod:`tidings._batch`);
* supervision (:mod:`tidings.supervision`): transient broker errors restart
  the intake with backoff; anything else fails the subscription, loudly.

Revocations from the broker drop holds, timers and slots of lost deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

from tidings._batch import BatchHandling
from tidings._delays import Delays
from tidings._failures import Failures
from tidings._flow import Flow, Timers
from tidings._handler import HandlerSpec
from tidings._handling import Handling, Item
from tidings._keys import KeySequencer
from tidings._leases import forget_revoked, keep_extended, release_unstarted
from tidings.broker import Broker, Delivery, SubscribeOptions
from tidings.broker import Subscription as BrokerSubscription
from tidings.codec import Codec
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.exactly_once import ExactlyOnce
from tidings.hooks import Observers
from tidings.middleware import HandlerMiddleware
from tidings.publisher import Publisher
from tidings.stats import ConsumerStats
from tidings.subscription import Subscription
from tidings.supervision import Supervision, is_transient
from tidings.tracing import Tracing

__all__ = ["Consumer"]

log = logging.getLogger("tidings.consumer")
#: Distinct skipped event types counted (and logged once each) per subscription.
_SKIPPED_TYPES_KEPT = 100
State = Literal["new", "running", "restarting", "failed", "stopped"]


class Consumer:
    """Runs one :class:`~tidings.subscription.Subscription`."""

    def __init__(
        self,
        subscription: Subscription,
        spec: HandlerSpec,
        publisher: Publisher,
        *,
        app_name: str,
        exactly_once: ExactlyOnce | None = None,
        observers: Observers | None = None,
        supervision: Supervision | None = None,
        on_failure: Callable[[Consumer], None] | None = None,
    ) -> None:
        self.sub = subscription
        self.spec = spec
        self.broker: Broker = publisher.broker
        self.codec: Codec = publisher.codec
        self.stats = ConsumerStats()
        self.observers = observers or Observers()
        #: Whether an observer listens to receipts, to handlings (plain flags: per event).
        self.observing = self.observers.overrides("received")
        self.timing = self.observers.overrides("handled")
        self.supervision = supervision or Supervision()
        self.state: State = "new"
        self.failure: BaseException | None = None
        self._on_failure = on_failure
        self.flow = Flow(subscription.prefetch)
        self.timers = Timers()
        self.delays = Delays(self)
        self.ready: deque[Item] = deque()
        ordered = subscription.ordering == "key"
        self.keys: KeySequencer[Item] | None = KeySequencer(_item_id) if ordered else None
        self.failures = Failures(
            subscription.name,
            subscription.retry,
            self.broker,
            exactly_once,
            self.stats,
            self.observers,
            self.flow,
            self.delays.retry_later,
            publisher,
        )
        self.handling = Handling(self, publisher, app_name, exactly_once)
        self.batches = BatchHandling(self, publisher, app_name) if spec.batch else None
        self._emulate_delay = not self.broker.capabilities.delayed_publish
        self._source: BrokerSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._extender: asyncio.Task[None] | None = None
        self.workers: set[asyncio.Task[None]] = set()
        self.commits: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self._stopping = False
        self.in_fetch = False
        self.running = 0

    # -- lifecycle -----------------------------------------------------------

    async def start(
        self, middleware: Sequence[HandlerMiddleware], tracing: Tracing | None = None
    ) -> None:
        self.handling.build([*middleware, *self.sub.middleware])
        if tracing is not None:
            group = self.sub.group
            handling, batches = self.handling, self.batches
            handling.process = tracing.process(handling.process, group)  # type: ignore[method-assign,assignment]
            if batches is not None:
                batches.handle = tracing.process_batch(batches.handle, group)  # type: ignore[method-assign,assignment]
        self._source = await self._subscribe()
        self.state = "running"
        self._task = asyncio.create_task(self._supervise(), name=f"tidings:{self.sub.name}")
        self._extender = asyncio.create_task(
            keep_extended(self), name=f"tidings-extend:{self.sub.name}"
        )

    async def _subscribe(self) -> BrokerSubscription:
        sub = self.sub
        options = SubscribeOptions(
            start=sub.start,
            prefetch=sub.prefetch,
            ack_wait=sub.ack_wait,
            client_name=self.handling.app_name,
        )
        return await self.broker.subscribe(sub.topics, sub.group, options, self._revoked)

    @property
    def stopping(self) -> bool:
        """A stop (or abort) was asked for: nothing new is taken or started."""
        return self._stopping

    @property
    def idle(self) -> bool:
        """Nothing fetched is waiting, running or held for a retry (and nothing failed)."""
        return (
            not self.flow.unsettled
            and not self.timers
            and not (self.keys is not None and len(self.keys))
            and self.state != "failed"
        )

    def abort(self) -> None:
        """Cancel the intake loop and every running handler (their events are not acked)."""
        self._stopping = True
        for task in (self._task, *self.workers):
            if task is not None:
                task.cancel()

    async def stop(self, timeout: float) -> None:
        """Stop taking events, let running handlers finish (up to ``timeout``), then leave."""
        self._stopping = True
        self.flow.slot.set()
        if self._extender is not None:
            self._extender.cancel()
        task = self._task
        if task is not None:
            if self.in_fetch or self.state == "restarting":
                task.cancel()
            await self._drain([task], timeout)
        await release_unstarted(self)
        self.timers.cancel_all()
        if self._source is not None:
            await self._source.close()
            self._source = None
        if self.state != "failed":
            self.state = "stopped"

    async def _drain(self, first: list[asyncio.Task[None]], timeout: float) -> None:
        """Wait up to ``timeout`` for ``first`` and every handler and commit, including
        those started meanwhile (a handler that finishes starts its commit); then
        cancel what still runs (its events are redelivered)."""
        deadline = time.monotonic() + timeout
        pending = {t for t in first if not t.done()}
        while True:
            pending |= {t for t in (*self.workers, *self.commits) if not t.done()}
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            _done, pending = await asyncio.wait(pending, timeout=remaining)
        if not pending:
            return
        for t in pending:
            t.cancel()
        log.warning(
            "%s: %d handler(s) still running after %.1fs; their events will be redelivered",
            self.sub.name,
            len(pending),
            timeout,
        )
        await asyncio.wait(pending)

    # -- supervision ---------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                if self._source is None:
                    self._source = await self._subscribe()
                    self.state = "running"
                await self._intake()
                return
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if time.monotonic() - started > self.supervision.reset_after:
                    failures = 0
                failures += 1
                if not is_transient(exc) or failures > self.supervision.max_restarts:
                    await self._fail(exc)
                    return
                delay = self.supervision.backoff(failures)
                log.warning(
                    "%s: broker error %r; restarting the subscription in %.2fs (%d of %d)",
                    self.sub.name,
                    exc,
                    delay,
                    failures,
                    self.supervision.max_restarts,
                )
                self.state = "restarting"
                self.stats.restarts += 1
                await self._reset()
                await asyncio.sleep(delay)

    async def _fail(self, exc: BaseException) -> None:
        """Fail for good: give everything held back to the broker, then tell the App."""
        self.state = "failed"
        self.failure = exc
        log.error("%s: subscription failed: %r", self.sub.name, exc, exc_info=exc)
        if self._extender is not None:
            self._extender.cancel()
        await self._reset()
        if self._on_failure is not None:
            self._on_failure(self)

    async def _reset(self) -> None:
        """Drop everything held and leave the broker: unsettled events are redelivered."""
        await self._drain([], self.supervision.drain_timeout)
        await release_unstarted(self)
        self.timers.cancel_all()
        self.ready.clear()
        if self.keys is not None:
            self.keys = KeySequencer(_item_id)
        self.flow.clear()
        self._error = None
        source, self._source = self._source, None
        if source is not None:
            try:
                await source.close()
            except Exception:
                log.exception("%s: closing the failed subscription failed", self.sub.name)

    def crash(self, exc: BaseException) -> None:
        """A background step (worker, commit, timer) failed: restart or fail via intake."""
        if self._error is None and not self._stopping:
            self._error = exc
        self.flow.slot.set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a tracked worker whose failure reaches the supervisor."""

        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.crash(exc)

        task = asyncio.create_task(guarded())
        self.workers.add(task)
        task.add_done_callback(self.workers.discard)

    # -- intake --------------------------------------------------------------

    async def _intake(self) -> None:
        source = self._source
        assert source is not None
        sub = self.sub
        flow = self.flow
        while not self._stopping:
            if self._error is not None:
                raise self._error
            if self.batches is not None:
                await self.batches.step(source)
                continue
            if self.ready and sub.concurrency == 1:
                # Events released meanwhile (a finished commit or timer freed them).
                while self.ready and not self._stopping:
                    await self.handling.process(*self.ready.popleft())
                continue
            free = flow.free
            if free <= 0:
                free, later = self._room_for_retries()
                if free <= 0:
                    flow.slot.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(flow.slot.wait(), later)
                    continue
            # Background commits and timers may release held events: look again soon.
            wait = 0.005 if self.commits else 0.05 if self.timers.handles else 0.5
            self.in_fetch = True
            try:
                deliveries = await source.fetch(free, wait)
            finally:
                self.in_fetch = False
            if not deliveries:
                continue
            self.receive(deliveries)
            for delivery in deliveries:
                admitted = self.admit(delivery)
                if admitted is not True:
                    await self.reject(delivery, admitted)
            if sub.concurrency > 1:
                self.pump()

    def _room_for_retries(self) -> tuple[int, float | None]:
        """Slots beyond the prefetch while it is full of events waiting behind retries.

        Such events cannot run until their key's retried event comes back, and that
        event must be fetched again: with no slot free, the subscription would wait
        forever. So once a retry is due it may take one more event per key away for
        a retry at a time, up to twice the prefetch in all (memory stays bounded);
        brokers hand out due retries ahead of new events, so few are needed. Returns
        (the room, or 0; None, or the seconds until the first retry is due).
        """
        keys = self.keys
        if keys is None or not len(keys):
            return 0, None
        away, blocked = keys.behind_retries()
        unsettled = len(self.flow.unsettled)
        if not away or blocked < unsettled:
            return 0, None  # something runs, or is ready: its end frees a slot
        room = min(len(away), 2 * self.flow.limit - unsettled)
        if room <= 0:
            return 0, None
        due = self.failures.retry_due
        first = min(due.get(ident, 0.0) for ident in away)
        wait = first - time.monotonic()
        return (room, None) if wait <= 0 else (0, wait)

    def receive(self, deliveries: Sequence[Delivery]) -> None:
        self.flow.take(deliveries)
        self.stats.received += len(deliveries)
        if self.observing:
            for delivery in deliveries:
                self.observers.received(self.sub.name, delivery)

    def admit(self, d: Delivery) -> bool | DecodeError:
        """Decode and filter; then run now, or hold behind an earlier event of its key.

        Returns True when taken (ready, held, or set aside until its time);
        otherwise what :meth:`reject` needs: the decode error, or False for an
        event the subscription skips. (Plain, not async: called per event.)
        """
        if self._emulate_delay and self.delays.early(d):
            return True
        try:
            event = self.codec.decode(d.value, d.headers)
        except DecodeError as exc:
            return exc
        if not self.spec.accepts_type(event.type) or (
            self.sub.filter is not None and not self.sub.filter.matches(event)
        ):
            self._skipping(event)
            return False
        item = (d, event)
        keys = self.keys
        if keys is not None and d.key is not None and not keys.admit((d.topic, d.key), item):
            return True
        self.ready.append(item)
        return True

    def _skipping(self, event: Event) -> None:
        """Count a skipped event by type; say so for the first of each type (a common mistake)."""
        counts = self.stats.skipped_types
        seen = counts.get(event.type)
        if seen is not None:
            counts[event.type] = seen + 1
            return
        if len(counts) >= _SKIPPED_TYPES_KEPT:
            return  # counted in stats.skipped only: a topic of very many types
        counts[event.type] = 1
        if not self.spec.accepts_type(event.type):
            accepted = ", ".join(sorted(self.spec.accepts or ())) or "any"
            log.warning(
                "%s: skipping events of type %r from %s: the handler takes %s "
                "(counted in stats.skipped_types; this is logged once per type)",
                self.sub.name,
                event.type,
                self.sub.topics if len(self.sub.topics) > 1 else self.sub.topics[0],
                accepted,
            )
        else:
            log.warning(
                "%s: skipping events of type %r: they do not match the subscription's filter "
                "(counted in stats.skipped_types; this is logged once per type)",
                self.sub.name,
                event.type,
            )

    async def reject(self, d: Delivery, reason: bool | DecodeError) -> None:
        """Dead-letter an undecodable delivery; ack one the subscription skips."""
        if isinstance(reason, DecodeError):
            await self.failures.dead_letter(d, reason)
        else:
            self.stats.skipped += 1
            self.flow.release(d)
            await d.ack()

    async def take(self, deliveries: Sequence[Delivery]) -> None:
        """Admit fetched deliveries, rejecting those that cannot or need not run."""
        for delivery in deliveries:
            admitted = self.admit(delivery)
            if admitted is not True:
                await self.reject(delivery, admitted)

    def pump(self) -> None:
        """Start handlers for ready events, up to the concurrency."""
        if self._stopping or self.state != "running":
            return  # a restart or a stop: nothing new starts
        while self.ready and self.running < self.sub.concurrency:
            self.running += 1
            self.spawn(self._process_then_pump(*self.ready.popleft()))

    async def _process_then_pump(self, d: Delivery, event: Event) -> None:
        try:
            await self.handling.process(d, event)
        finally:
            self.running -= 1
            self.pump()

    def after(self, d: Delivery, retry: bool) -> None:
        """Release (or keep holding, on retry) the key of a finished delivery."""
        keys = self.keys
        if keys is None or d.key is None:
            return
        following = keys.finish((d.topic, d.key), d.id if retry else None)
        if following is not None:
            self.ready.append(following)

    # -- revocation and leases ------------------------------------------------

    def _revoked(self, deliveries: Sequence[Delivery]) -> None:
        forget_revoked(self, deliveries)

    def __repr__(self) -> str:
        return f"<Consumer {self.sub.name} topics={self.sub.topics} group={self.sub.group}>"


def _item_id(item: Item) -> str:
    return item[0].id
