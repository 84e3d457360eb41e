"""A member of a group (or a group-less reader): receiving from its queues, giving back.

A member reads one queue per topic. ``receivers`` tasks per queue long-poll
``ReceiveMessage`` (up to ten messages each) while the member holds fewer than
``prefetch`` unsettled messages, with ``ack_wait`` as the visibility timeout:
SQS hides a received message from the other members until it is deleted or
its visibility timeout ends. So competing consumers need no coordination, and
a member that dies loses nothing: what it held comes back after ``ack_wait``.

What the member loses it reports through ``on_revoke`` at its next ``fetch``:

* deliveries whose visibility timeout ended before they were settled;
* on FIFO queues, a nack makes SQS hold the key's later messages until the
  retry is handled; the later messages of that key this member already holds
  are given back at once (visible again, behind the retry in SQS's order) and
  reported with the nacked delivery, which any member may receive next (when they
  come back to this member their attempt does not count the give-back);
* on standard queues, a nacked delivery that did not come back to this member
  within ``wait + 5`` seconds of its due time (another member received it).

Closing gives back (visibility 0) everything the member holds unsettled, after
sending the settlements still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from tidings.broker import Delivery, RevokeHandler, SubscribeOptions
from tidings.brokers.sqs._binding import read
from tidings.brokers.sqs._client import AWS_ERRORS, MISSING_QUEUE, Aws, code_of
from tidings.brokers.sqs._delivery import Settlements, SqsDelivery, visibility
from tidings.errors import BrokerUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import MessageSystemAttributeNameType

__all__ = ["Queue", "SqsMember"]

log = logging.getLogger("tidings.brokers.sqs")

#: Seconds between attempts to receive again after a failure (doubling up to the last).
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
#: Seconds between empty short polls (``wait=0``).
_SHORT_POLL_PAUSE = 0.05
#: Most message ids kept in :attr:`SqsMember.unhandled`.
_UNHANDLED_KEPT = 10_000
#: Most seconds of visibility a buffered message keeps in reserve: one with less left is
#: given more before it is handed out (a third of ``ack_wait`` when that is shorter).
_MARGIN = 5.0
#: Failed receives in a row after which ``fetch`` raises BrokerUnavailable.
_FAILURES = 30
_SYSTEM_ATTRIBUTES: list[MessageSystemAttributeNameType] = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "MessageGroupId",
]


class Queue:
    """One queue a member reads: the topic it carries, its URL."""

    __slots__ = ("name", "reader", "settlements", "subscription_arn", "topic", "url")

    def __init__(
        self, topic: str, name: str, url: str, settlements: Settlements, reader: bool
    ) -> None:
        self.topic = topic
        self.name = name
        self.url = url
        self.settlements = settlements
        #: A group-less reader's own queue (no redrive; dropped on close).
        self.reader = reader
        #: The SNS subscription of a group-less reader's own queue (dropped on close).
        self.subscription_arn: str | None = None


class SqsMember:
    """A :class:`~tidings.broker.Subscription` on SQS queues."""

    def __init__(
        self,
        aws: Aws,
        queues: Sequence[Queue],
        group: str | None,
        options: SubscribeOptions,
        on_revoke: RevokeHandler | None,
        closer: Callable[[SqsMember], Awaitable[None]],
        restore: Callable[[Queue], Awaitable[None]],
    ) -> None:
        self.aws = aws
        self.queues = {q.name: q for q in queues}
        self.group = group
        self.prefetch = options.prefetch
        self.ack_wait = options.ack_wait
        self.on_revoke = on_revoke
        self._closer = closer
        self._restorer = restore
        self._restoring = asyncio.Lock()
        self.fifo = aws.options.fifo
        self.wait = aws.options.wait
        #: Received and not settled (buffered or handed), by receipt handle.
        self.held: dict[str, SqsDelivery] = {}
        self.buffer: deque[SqsDelivery] = deque()
        #: Receives in flight, counted as held so that they never exceed the prefetch.
        self.reserved = 0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.closed = False
        self.failures = 0
        self.last_error: BaseException | None = None
        #: Lost deliveries not reported yet.
        self.lost: list[SqsDelivery] = []
        #: Nacked (standard queues): delivery id -> (the delivery, report it lost after).
        self.away: dict[str, tuple[SqsDelivery, float]] = {}
        #: SQS message id -> receives this member gave back unhandled (FIFO: behind a retry
        #: of their key): not attempts, taken off the receive count when they come back.
        self.unhandled: dict[str, int] = {}
        self._scanned = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, receivers: int) -> None:
        self.room.set()
        for queue in self.queues.values():
            for n in range(receivers):
                self._tasks.append(
                    asyncio.create_task(self._receive(queue), name=f"tidings-sqs-{queue.name}-{n}")
                )
        self._tasks.append(asyncio.create_task(self._keep(), name="tidings-sqs-keep"))

    async def _keep(self) -> None:
        """Keep buffered messages hidden while they wait to be handed out.

        A message received ahead of the App (up to ``prefetch``) could wait in the
        buffer past its visibility timeout; SQS would then hand it out again while this
        member still held it, or it would be handed out here with too little time left
        to be settled, and come twice. Its visibility is renewed before that.
        """
        margin = min(_MARGIN, self.ack_wait / 3)
        wait = visibility(self.ack_wait) or 1
        while not self.closed:
            await asyncio.sleep(margin / 2)
            soon = time.monotonic() + margin
            for delivery in self.buffer:
                if not delivery.lost and delivery.due <= soon and not delivery.handed:
                    delivery.due = time.monotonic() + wait
                    self.settlements(delivery.queue).change(delivery.receipt, wait)

    def settlements(self, name: str) -> Settlements:
        return self.queues[name].settlements

    # -- receiving --------------------------------------------------------------------

    async def _receive(self, queue: Queue) -> None:
        failures = 0
        while not self.closed:
            room = self.prefetch - len(self.held) - self.reserved
            if room <= 0:
                self.room.clear()
                await self.room.wait()
                continue
            count = min(room, 10)
            self.reserved += count
            # The visibility timeout runs from when the server took the messages, some
            # time before the answer arrives here (seconds, on a loaded server): count
            # from the request, so a delivery is fenced before SQS can hand it out again.
            asked = time.monotonic()
            try:
                got = await self.aws.sqs.receive_message(
                    QueueUrl=queue.url,
                    MaxNumberOfMessages=count,
                    WaitTimeSeconds=self.wait,
                    VisibilityTimeout=visibility(self.ack_wait) or 1,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
                )
            except AWS_ERRORS as exc:
                self.reserved -= count
                if self.closed:
                    return
                if code_of(exc) in MISSING_QUEUE:
                    await self._restore(queue)
                failures += 1
                self.failures += 1
                self.last_error = exc
                delay = _BACKOFF[min(failures, len(_BACKOFF)) - 1]
                log.warning("receiving from %s failed (%r); again in %gs", queue.name, exc, delay)
                self.wake.set()
                await asyncio.sleep(delay)
                continue
            self.reserved -= count
            failures = self.failures = 0
            messages = got.get("Messages", [])
            if self.closed:
                # Received while closing: give it straight back.
                for message in messages:
                    queue.settlements.change(message["ReceiptHandle"], 0)
                return
            for message in messages:
                value, key, headers, attempt, published = read(message)
                if self.unhandled:
                    attempt -= self.unhandled.pop(message["MessageId"], 0)
                delivery = SqsDelivery(
                    self,
                    queue.name,
                    queue.topic,
                    message,
                    value,
                    key,
                    headers,
                    attempt,
                    published,
                    asked + self.ack_wait,
                )
                if self.away:
                    self.away.pop(delivery.id, None)
                self.held[delivery.receipt] = delivery
                self.buffer.append(delivery)
            if messages:
                self.wake.set()
            elif self.wait == 0:
                await asyncio.sleep(_SHORT_POLL_PAUSE)

    async def _restore(self, queue: Queue) -> None:
        """The queue vanished (deleted, or an emulator restarted empty): make it again."""
        async with self._restoring:
            stale = queue.url
            self.aws.forget()
            try:
                await self._restorer(queue)
            except AWS_ERRORS as exc:
                log.warning("re-creating queue %s failed: %r", queue.name, exc)
                return
            if queue.url != stale:
                log.info("queue %s has a new URL: %s", queue.name, queue.url)
            log.warning("queue %s was gone: created and subscribed again", queue.name)

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            self._report_lost()
            if self.failures >= _FAILURES:
                raise BrokerUnavailable(
                    f"receiving from SQS at {self.aws.options.url} failed {self.failures} times "
                    f"in a row: {self.last_error!r}"
                )
            out: list[Delivery] = []
            buffer = self.buffer
            while buffer and len(out) < max_count:
                delivery = buffer.popleft()
                if not delivery.fenced():
                    delivery.handed = True
                    out.append(delivery)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(remaining, 1.0))
        return []

    def _report_lost(self) -> None:
        now = time.monotonic()
        if now - self._scanned >= 1.0:
            self._scanned = now
            for receipt, delivery in list(self.held.items()):
                if now >= delivery.due:
                    del self.held[receipt]
                    if delivery.handed and not delivery.settled:
                        delivery.settled = True
                        self.lost.append(delivery)
            if self.away:
                for ident, (delivery, after) in list(self.away.items()):
                    if now >= after:
                        del self.away[ident]
                        self.lost.append(delivery)
            self.room.set()
        if self.lost:
            lost, self.lost = self.lost, []
            if self.on_revoke is not None:
                self.on_revoke(lost)

    # -- settling ----------------------------------------------------------------------

    def settled(self, delivery: SqsDelivery) -> None:
        """``delivery`` is no longer held (acked or nacked)."""
        if self.held.pop(delivery.receipt, None) is not None:
            self.room.set()

    def nacked(self, delivery: SqsDelivery, delay: float) -> None:
        self.settled(delivery)
        settlements = self.settlements(delivery.queue)
        settlements.change(delivery.receipt, visibility(delay))
        if not delivery.handed:
            return
        if self.fifo:
            behind = [
                d
                for d in self.held.values()
                if d.sequence == delivery.sequence and d.queue == delivery.queue
            ]
            if len(self.unhandled) > _UNHANDLED_KEPT:
                self.unhandled.clear()  # received by other members meanwhile
            for d in behind:
                d.lost = True
                del self.held[d.receipt]
                settlements.change(d.receipt, 0)
                self.unhandled[d.message_id] = self.unhandled.get(d.message_id, 0) + 1
            self.lost.append(delivery)
            self.lost.extend(d for d in behind if d.handed)
            if behind:
                self.buffer = deque(d for d in self.buffer if not d.lost)
        else:
            self.away[delivery.id] = (delivery, time.monotonic() + delay + self.wait + 5.0)

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        self.room.set()
        await self._closer(self)

    async def stop(self) -> None:
        """Stop receiving, send queued settlements, give back what is held (the closer)."""
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        held, self.held = list(self.held.values()), {}
        self.buffer.clear()
        for delivery in held:
            delivery.lost = True
            if not delivery.settled:
                self.settlements(delivery.queue).change(delivery.receipt, 0)
        for queue in self.queues.values():
            with contextlib.suppress(*AWS_ERRORS):
                await queue.settlements.flush()
            if queue.subscription_arn is not None:
                await self.aws.drop_queue(queue.name, queue.subscription_arn)
