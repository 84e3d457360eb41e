"""The engine behind one subscription: fetch, decode, filter, order, handle, settle.

Outcomes map to settlement (SEMANTICS.md): a normal return publishes the
follow-ups, then acks; an exception goes to the retry policy, which either
nacks with a delay (the key is held back meanwhile, under ``ordering="key"``)
or dead-letters (DLQ first, then ack). ``at_most_once`` acks before handling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidings._handler import HandlerSpec
from tidings.broker import Delivery, Message, Transactional
from tidings.broker import Subscription as BrokerSubscription
from tidings.context import Context
from tidings.deadletter import dead_letter_message, dead_letter_topic
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.middleware import Handle, build_stack

if TYPE_CHECKING:
    from tidings.app import App
    from tidings.subscription import Subscription

__all__ = ["Consumer", "ConsumerStats"]

log = logging.getLogger("tidings.consumer")
_Ident = tuple[str, int, int]
_Item = tuple[Delivery, Event]


@dataclass
class ConsumerStats:
    """Counters of one subscription since start."""

    received: int = 0
    handled: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0


def _ident(d: Delivery) -> _Ident:
    return (d.topic, d.partition, d.offset)


class Consumer:
    """Runs one :class:`~tidings.subscription.Subscription` of an :class:`App`."""

    def __init__(self, app: App, subscription: Subscription, spec: HandlerSpec) -> None:
        self.app = app
        self.sub = subscription
        self.broker = broker = app.broker
        self.spec = spec
        self.stats = ConsumerStats()
        self._transactional: Transactional | None = (
            broker if subscription.delivery == "exactly_once" else None  # type: ignore[assignment]
        )
        self._native_delay = broker.capabilities.native_delay
        self._source: BrokerSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._commits: set[asyncio.Task[None]] = set()
        self._ready: deque[_Item] = deque()
        self._busy: dict[tuple[str, str], deque[_Item] | tuple[()]] = {}
        self._retrying: dict[tuple[str, str], _Ident] = {}
        self._first_failure: dict[_Ident, float] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._unsettled = 0
        self._running = 0
        self._slot = asyncio.Event()
        self._stopping = False
        self._in_fetch = False
        self._handle: Handle = self._invoke
        self._needs_context = True  # set at start: False without middleware and ctx argument

    # -- lifecycle -----------------------------------------------------------

    async def start(self, middleware: Sequence[Callable[[Handle], Handle]]) -> None:
        inner: Handle = self._invoke
        stack = [*middleware, *self.sub.middleware]
        self._handle = build_stack(inner, stack)
        self._needs_context = bool(stack) or self.spec.wants_context
        self._source = await self.broker.subscribe(
            self.sub.topics, self.sub.group, start=self.sub.start
        )
        self._task = asyncio.create_task(self._run(), name=f"tidings:{self.sub.name}")

    @property
    def idle(self) -> bool:
        """Nothing fetched is waiting, running or held for a retry."""
        return self._unsettled == 0 and not self._retrying and not self._timers

    def abort(self) -> None:
        """Cancel the intake loop and every running handler (their events are not acked)."""
        self._stopping = True
        for task in (self._task, *self._workers):
            if task is not None:
                task.cancel()

    async def stop(self, timeout: float) -> None:
        """Stop taking events, let running handlers finish (up to ``timeout``), then leave."""
        self._stopping = True
        self._slot.set()
        task = self._task
        if task is not None:
            if self._in_fetch:
                task.cancel()
            pending = [task, *self._workers, *self._commits]
            _done, not_done = await asyncio.wait(pending, timeout=timeout)
            for t in not_done:
                t.cancel()
            if not_done:
                log.warning(
                    "%s: %d handler(s) still running after %.1fs; their events will be redelivered",
                    self.sub.name,
                    len(not_done),
                    timeout,
                )
                await asyncio.wait(not_done)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._source is not None:
            await self._source.close()

    # -- intake --------------------------------------------------------------

    async def _run(self) -> None:
        source = self._source
        assert source is not None
        sub = self.sub
        batch = self.spec.batch
        try:
            while not self._stopping:
                if self._ready and sub.concurrency == 1:
                    # Events released meanwhile (a background commit freed their key).
                    while self._ready and not self._stopping:
                        await self._process(*self._ready.popleft())
                    continue
                free = sub.prefetch - self._unsettled
                if free <= 0:
                    self._slot.clear()
                    await self._slot.wait()
                    continue
                self._in_fetch = True
                deliveries: Sequence[Delivery]
                try:
                    if batch:
                        deliveries = await self._fetch_batch(source, min(free, sub.batch_size))
                    else:
                        # Background commits may unblock held events: look again soon.
                        wait = 0.005 if self._commits else 0.5
                        deliveries = await source.fetch(free, wait)
                finally:
                    self._in_fetch = False
                if not deliveries:
                    continue
                self._unsettled += len(deliveries)
                self.stats.received += len(deliveries)
                if batch:
                    await self._handle_batch(list(deliveries))
                    continue
                for delivery in deliveries:
                    admitted = self._admit(delivery)
                    if admitted is not True:
                        await self._reject(delivery, admitted)
                if sub.concurrency > 1:
                    self._pump()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception:
            # A broker failure (ack, nack, fetch). Unsettled events will be
            # redelivered; the app reports the consumer as failed.
            log.exception("%s: consumer stopped by an error", self.sub.name)
            raise

    async def _fetch_batch(self, source: BrokerSubscription, size: int) -> list[Delivery]:
        out = list(await source.fetch(size, 0.5))
        if not out:
            return out
        deadline = time.monotonic() + self.sub.batch_timeout
        while len(out) < size and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            out.extend(await source.fetch(size - len(out), remaining))
        return out

    def _admit(self, d: Delivery) -> bool | DecodeError:
        """Decode and filter; then run now, or hold behind an earlier event of its key.

        Returns True when admitted; otherwise what :meth:`_reject` needs: the
        decode error, or False for an event the subscription skips.
        """
        try:
            event = self.app.codec.decode(d.value, d.headers)
        except DecodeError as exc:
            return exc
        if not self.spec.accepts_type(event.type) or (
            self.sub.filter is not None and not self.sub.filter.matches(event)
        ):
            return False
        item = (d, event)
        if self.sub.ordering == "key" and d.key is not None:
            key = (d.topic, d.key)
            waiting = self._busy.get(key)
            if waiting is not None:
                if self._retrying.get(key) == _ident(d):
                    del self._retrying[key]
                    self._ready.append(item)
                elif waiting:
                    waiting.append(item)
                else:
                    self._busy[key] = deque((item,))
                return True
            # Busy with nobody waiting: a shared empty tuple, not a new deque per event.
            self._busy[key] = ()
        self._ready.append(item)
        return True

    async def _reject(self, d: Delivery, reason: bool | DecodeError) -> None:
        """Dead-letter an undecodable delivery; ack one the subscription skips."""
        if isinstance(reason, DecodeError):
            await self._dead_letter([d], reason, time.time())
        else:
            self.stats.skipped += 1
            await self._settle_ack(d)

    def _pump(self) -> None:
        while self._ready and self._running < self.sub.concurrency and not self._stopping:
            item = self._ready.popleft()
            self._running += 1
            task = asyncio.create_task(self._process_task(*item))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _process_task(self, d: Delivery, event: Event) -> None:
        try:
            await self._process(d, event)
        finally:
            self._running -= 1
            self._pump()

    # -- handling ------------------------------------------------------------

    async def _invoke(self, ctx: Context) -> list[Event]:
        result = await self.spec.call(ctx.event, ctx)
        return self.app._follow_ups(ctx.event, result, ctx._outputs)

    async def _process(self, d: Delivery, event: Event) -> None:
        # A handler that asks for no context, without middleware, gets none built.
        ctx = Context(self.app.name, self.sub.name, d, event) if self._needs_context else None
        delivery = self.sub.delivery
        retry = False
        committing = False
        try:
            if delivery == "at_most_once":
                await self._settle_ack(d)
                try:
                    outputs = await self._handle(
                        ctx or Context(self.app.name, self.sub.name, d, event)
                    )
                    await self.app._publish_events(outputs)
                    self.stats.handled += 1
                except Exception as exc:
                    self.stats.failed += 1
                    log.error("%s: handler failed (at most once, dropped): %r", self.sub.name, exc)
                return
            if self._transactional is not None and d.attempt > 1:
                # A redelivery may have been committed already: skip the handler then.
                # (A first delivery that duplicates an earlier event is caught by the
                # commit's dedup record: its follow-ups are dropped.)
                dedup = f"{event.source}\n{event.id}"
                if await self._transactional.is_processed(d, dedup):
                    self.stats.skipped += 1
                    await self._settle_ack(d)
                    return
            try:
                if ctx is None:
                    outputs = self.app._follow_ups(event, await self.spec.call(event, None))
                else:
                    outputs = await self._handle(ctx)
                if self._transactional is not None:
                    messages = await self.app._prepare_commit(outputs)
                elif outputs:
                    await self.app._publish_events(outputs)
            except Exception as exc:
                retry = await self._failed([d], exc)
                return
            if self._transactional is not None:
                # Commit in the background: the next handling (of another key) runs
                # meanwhile, so commits of consecutive handlings share a transaction.
                # The key stays busy, and the prefetch slot taken, until it is done.
                committing = True
                task = asyncio.create_task(self._commit(d, messages, f"{event.source}\n{event.id}"))
                self._commits.add(task)
                task.add_done_callback(self._commits.discard)
                return
            self._settled()
            await d.ack()
            if self._first_failure:
                self._first_failure.pop(_ident(d), None)
            self.stats.handled += 1
        finally:
            if not committing:
                self._after(d, retry)

    async def _commit(self, d: Delivery, messages: list[tuple[str, Message]], dedup: str) -> None:
        assert self._transactional is not None
        failed = False
        try:
            await self._transactional.commit(d, messages, dedup)
        except Exception:
            # Nothing was committed: handle it again, and keep later events of its key
            # waiting behind it, as for a retry.
            failed = True
            log.exception(
                "%s: exactly-once commit failed; the event will be redelivered", self.sub.name
            )
            await d.nack()
        else:
            if self._first_failure:
                self._first_failure.pop(_ident(d), None)
            self.stats.handled += 1
        finally:
            self._settled()
            self._after(d, failed)
            if self.sub.concurrency > 1:
                self._pump()

    async def _handle_batch(self, deliveries: list[Delivery]) -> None:
        events: list[Event] = []
        good: list[Delivery] = []
        for d in deliveries:
            try:
                event = self.app.codec.decode(d.value, d.headers)
            except DecodeError as exc:
                await self._dead_letter([d], exc, time.time())
                continue
            if not self.spec.accepts_type(event.type) or (
                self.sub.filter is not None and not self.sub.filter.matches(event)
            ):
                self.stats.skipped += 1
                await self._settle_ack(d)
                continue
            events.append(event)
            good.append(d)
        if not good:
            return
        ctx = Context(self.app.name, self.sub.name, good[0], events[0], events)
        if self.sub.delivery == "at_most_once":
            for d in good:
                await self._settle_ack(d)
        try:
            outputs = await self._handle(ctx)
            await self.app._publish_events(outputs)
        except Exception as exc:
            if self.sub.delivery == "at_most_once":
                self.stats.failed += len(good)
                log.error("%s: batch handler failed (at most once): %r", self.sub.name, exc)
            else:
                await self._failed(good, exc)
            return
        if self.sub.delivery != "at_most_once":
            for d in good:
                await self._settle_ack(d)
                self._first_failure.pop(_ident(d), None)
        self.stats.handled += len(good)

    async def _failed(self, deliveries: list[Delivery], exc: BaseException) -> bool:
        """Apply the retry policy; True if the deliveries will be retried."""
        self.stats.failed += len(deliveries)
        now = time.time()
        decision = self.sub.retry.decide(exc, deliveries[0].attempt)
        if decision.action == "dead_letter":
            await self._dead_letter(deliveries, exc, now)
            return False
        log.info(
            "%s: attempt %d failed with %r; retrying in %.3fs",
            self.sub.name,
            deliveries[0].attempt,
            exc,
            decision.delay,
        )
        self.stats.retried += len(deliveries)
        for d in deliveries:
            self._first_failure.setdefault(_ident(d), now)
            self._settled()
            if self._native_delay or decision.delay <= 0:
                await d.nack(decision.delay)
            else:
                self._nack_later(d, decision.delay)
        return True

    def _nack_later(self, d: Delivery, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            task = loop.create_task(d.nack(0.0))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _dead_letter(
        self, deliveries: list[Delivery], exc: BaseException, now: float
    ) -> None:
        for d in deliveries:
            first = self._first_failure.pop(_ident(d), now)
            message = dead_letter_message(d, exc, first, now, self.sub.name)
            topic = dead_letter_topic(d.topic)
            log.warning(
                "%s: dead-lettering %s[%d]@%d after %d attempt(s): %r",
                self.sub.name,
                d.topic,
                d.partition,
                d.offset,
                d.attempt,
                exc,
            )
            self._settled()
            if self._transactional is not None:
                await self._transactional.commit(d, [(topic, message)])
            else:
                await self.broker.publish(topic, [message])
                await d.ack()
            self.stats.dead_lettered += 1

    # -- settlement bookkeeping ----------------------------------------------

    async def _settle_ack(self, d: Delivery) -> None:
        self._settled()
        await d.ack()

    def _settled(self) -> None:
        self._unsettled -= 1
        self._slot.set()

    def _after(self, d: Delivery, retry: bool) -> None:
        """Release (or keep holding, on retry) the key of a finished delivery."""
        if self.sub.ordering != "key" or d.key is None:
            return
        key = (d.topic, d.key)
        if retry:
            self._retrying[key] = _ident(d)
            return
        waiting = self._busy.get(key)
        if waiting:
            self._ready.append(waiting.popleft())
        else:
            self._busy.pop(key, None)

    def __repr__(self) -> str:
        return f"<Consumer {self.sub.name} topics={self.sub.topics} group={self.sub.group}>"
