"""Handling one event and settling it, per delivery guarantee (SEMANTICS.md).

* ``at_most_once``: ack, then handle; a failure is logged and counted, never retried.
* ``at_least_once``: handle, publish the follow-ups, then ack; a failure goes to
  the retry policy (:class:`~tidings._failures.Failures`).
* ``exactly_once``: a redelivery already committed is skipped; otherwise the
  follow-ups and the ack commit together through the subscription's
  :class:`~tidings.exactly_once.ExactlyOnce` strategy. The commit runs in the
  background so the next event (of another key) is handled meanwhile; the key
  stays held and the slot taken until it is done. A strategy that is also a
  :class:`~tidings.exactly_once.HandlerTransaction` (an inbox) opens its
  transaction before the handler runs and hands it over in the context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from tidings._logfields import EXTRA, delivery_fields, described
from tidings._replies import has_type, is_request, reply_address
from tidings.broker import Delivery, Message
from tidings.context import Context
from tidings.errors import AttemptsExhausted
from tidings.event import Event
from tidings.exactly_once import ExactlyOnce, HandlerTransaction
from tidings.middleware import Handle, HandlerMiddleware, build_stack
from tidings.publisher import Publisher

if TYPE_CHECKING:
    from tidings._consumer import Consumer

__all__ = ["Handling", "Item", "begin"]

log = logging.getLogger("tidings.consumer")
Item = tuple[Delivery, Event]


def begin(d: Delivery) -> Awaitable[None] | None:
    """Tell a broker that counts attempts (``CountsAttempts``) that ``d``'s handling starts.

    Returns what must be awaited before the handler runs, if anything.
    """
    start = getattr(d, "begin", None)
    return None if start is None else start()


class Handling:
    """Runs the handler for one event and settles its delivery."""

    def __init__(
        self,
        consumer: Consumer,
        publisher: Publisher,
        app_name: str,
        exactly_once: ExactlyOnce | None,
    ) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.app_name = app_name
        self.name = consumer.sub.name
        self.delivery = consumer.sub.delivery
        self.exactly_once = exactly_once if self.delivery == "exactly_once" else None
        self.transactions = (
            self.exactly_once if isinstance(self.exactly_once, HandlerTransaction) else None
        )
        self.spec = consumer.spec
        self.handle: Handle = self.invoke
        self.needs_context = True
        self.max_attempts = consumer.failures.policy.max_attempts

    def build(self, middleware: Sequence[HandlerMiddleware]) -> None:
        invoke: Handle = self.invoke
        self.handle = build_stack(invoke, middleware)
        # A handler that asks for no context, without middleware, gets none built.
        self.needs_context = bool(middleware) or self.spec.wants_context

    async def invoke(self, ctx: Context) -> list[Event]:
        result = await self.spec.call(ctx.event, ctx)
        if (
            result is not None
            and ctx._reply is None
            and not self.spec.batch  # a batch's result answers no single request
            and ctx.replyto is not None
        ):
            ctx._reply = (result, None, {})  # a request: the return value is the reply
            result = None
        return self.publisher.follow_ups(ctx.event, result, ctx._outputs, ctx.routes)

    def reply(self, ctx: Context | None) -> tuple[str, Event] | None:
        """The reply a handling queued, with its address; None if there is none to send."""
        if ctx is None or ctx._reply is None:
            return None
        address = reply_address(ctx.event, self.publisher.native_replies)
        if address is None:
            return None
        payload, _, attributes = ctx._reply
        if "type" not in attributes and not has_type(payload):
            # A plain value (dict, list, number): typed after the request.
            attributes = {**attributes, "type": ctx.event.type + ".reply"}
        return address, self.publisher.follow_ups(ctx.event, None, [(payload, None, attributes)])[0]

    def context(self, d: Delivery, event: Event, events: list[Event] | None = None) -> Context:
        return Context(self.app_name, self.name, d, event, events)

    async def process(self, d: Delivery, event: Event) -> None:
        consumer = self.consumer
        if self.delivery == "at_most_once":
            await self._at_most_once(d, event)
            consumer.after(d, False)
            return
        # A request (replyto set) gets a context, for its reply; an inbox's transaction too.
        transactions = self.transactions
        wants_context = self.needs_context or transactions is not None or is_request(event)
        ctx = self.context(d, event) if wants_context else None
        retry = False
        committing = False
        opened = False
        timing = consumer.timing
        started = time.perf_counter() if timing else 0.0
        try:
            exactly_once = self.exactly_once
            # A redelivery may have been committed already: skip the handler then.
            # (A first delivery duplicating an earlier event is caught by the
            # commit's dedup record: its follow-ups are dropped.)
            if (
                exactly_once is not None
                and d.attempt > 1
                and await exactly_once.handled_before(d, event)
            ):
                consumer.stats.skipped += 1
                consumer.flow.release(d)
                await d.ack()
                return
            if d.attempt > self.max_attempts:
                # Every allowed handling died with its process: never run it again.
                await consumer.failures.dead_letter(
                    d, AttemptsExhausted(d.attempt, self.max_attempts), event
                )
                return
            if (written := begin(d)) is not None:  # CountsAttempts: recorded first
                await written
            try:
                if transactions is not None:  # failing to begin is a failed attempt
                    transaction = await transactions.begin(d, event)
                    if transaction is None:  # committed by an earlier delivery
                        consumer.stats.skipped += 1
                        consumer.flow.release(d)
                        await d.ack()
                        return
                    opened = True
                    if ctx is not None:
                        ctx.transaction = transaction
                if ctx is None:
                    outputs = self.publisher.follow_ups(event, await self.spec.call(event, None))
                    routes = None
                else:
                    outputs = await self.handle(ctx)
                    routes = ctx.routes
                reply = self.reply(ctx)
                if exactly_once is not None:
                    if reply is not None and not self.publisher.native_replies:
                        # Committed with the follow-ups and the ack: one reply, at most.
                        outputs = [*outputs, reply[1]]
                        routes = {**(routes or {}), reply[1].id: reply[0]}
                        reply = None
                    messages = await self.publisher.prepare_commit(outputs, routes)
                elif outputs:
                    await self.publisher.publish_events(outputs, routes)
                if reply is not None:
                    await self.publisher.send_reply(*reply)
            except Exception as exc:
                if opened:  # before a retry: the redelivery must find nothing claimed
                    opened = False
                    await self._roll_back(d)
                retry = await consumer.failures.failed(d, exc, event)
                return
            if timing:
                consumer.observers.handled(self.name, d, event, time.perf_counter() - started)
            if exactly_once is not None:
                committing = True
                opened = False  # the commit ends the transaction now
                task = asyncio.create_task(self._commit(exactly_once, d, event, messages))
                consumer.commits.add(task)
                task.add_done_callback(consumer.commits.discard)
                return
            consumer.flow.release(d)
            await d.ack()
            if consumer.failures.first_failure:
                consumer.failures.succeeded(d)
            consumer.stats.handled += 1
        finally:
            if opened:  # cancelled while the handler ran
                await self._roll_back(d)
            keys = consumer.keys
            if not committing and keys is not None and d.key is not None:
                # Consumer.after, inlined: this runs once per event.
                following = keys.finish((d.topic, d.key), d.id if retry else None)
                if following is not None:
                    consumer.ready.append(following)

    async def _roll_back(self, d: Delivery) -> None:
        assert self.transactions is not None
        try:
            await self.transactions.rollback(d)
        except Exception as exc:  # the database ends the transaction with its connection
            log.warning("%s: rolling back the inbox transaction failed: %r", self.name, exc)

    async def _at_most_once(self, d: Delivery, event: Event) -> None:
        consumer = self.consumer
        consumer.flow.release(d)
        await d.ack()
        try:
            ctx = self.context(d, event)
            await self.publisher.publish_events(await self.handle(ctx), ctx.routes)
            if (reply := self.reply(ctx)) is not None:
                await self.publisher.send_reply(*reply)
            consumer.stats.handled += 1
        except Exception as exc:
            consumer.stats.failed += 1
            fields = delivery_fields(self.name, d, event)
            fields.update(error=repr(exc), outcome="dropped")
            log.error(
                "%s: %s failed with %r; dropped (at most once: never retried)",
                self.name,
                described(fields),
                exc,
                extra={EXTRA: fields},
            )

    async def _commit(
        self,
        exactly_once: ExactlyOnce,
        d: Delivery,
        event: Event,
        messages: list[tuple[str, Message]],
    ) -> None:
        consumer = self.consumer
        failed = False
        try:
            await exactly_once.commit(d, event, messages)
        except Exception as exc:
            # Nothing was committed: the event is handled again, and later events of
            # its key keep waiting behind it, as for a retry.
            # Held back as for a retry, unless it was revoked meanwhile (then its
            # new owner has it, and its key must not wait here for it).
            failed = consumer.flow.release(d)
            log.warning(
                "%s: exactly-once commit failed (%r); the event will be redelivered",
                self.name,
                exc,
            )
            if failed:
                try:
                    await d.nack()
                except Exception as nack_error:  # the broker is gone: restart
                    consumer.crash(nack_error)
        else:
            consumer.flow.release(d)
            if consumer.failures.first_failure:
                consumer.failures.succeeded(d)
            consumer.stats.handled += 1
            if consumer.observers:
                consumer.observers.committed(self.name, d, len(messages))
        finally:
            consumer.after(d, failed)
            if consumer.sub.concurrency > 1:
                consumer.pump()
