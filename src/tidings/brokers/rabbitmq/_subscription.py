"""One group member: which partition queues it owns, consuming them, settling.

A group has ``partitions`` quorum queues per topic. A member owns a partition
while it holds the partition's lock, an exclusive queue (RabbitMQ lets one
connection declare it; it goes with the connection, so a dead member's
partitions free themselves). Each member has its own connection and consumes
the group's ``members`` queue, whose consumer count is the group's size. Every
``heartbeat`` it compares what it owns with its share (the partitions divided
by the members, rounded up): it gives up the partitions beyond its share and
tries the locks of free ones until it has its share. So one member at a time
reads a partition, and a key's events (one partition) are read in order.

Each owned partition has its own channel: giving a partition up closes it, and
RabbitMQ puts back every message taken on it and not acked (ahead of later
ones, in their order). Events of a key with a retry still waiting in a delay
queue are first moved into that delay queue behind the retry, so the next
owner receives the retry first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import AMQPError

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers._rabbitmq_delays import delay_bucket
from tidings.brokers.rabbitmq._alive import alive, close_connection
from tidings.brokers.rabbitmq._binding import copy, read
from tidings.brokers.rabbitmq._delivery import Partition, RabbitDelivery
from tidings.brokers.rabbitmq._topology import (
    PARTITION,
    declare_delay,
    members_queue,
)
from tidings.errors import BrokerUnavailable

__all__ = ["RabbitMember"]

log = logging.getLogger("tidings.brokers.rabbitmq")


class RabbitMember:
    """A :class:`~tidings.broker.Subscription`: one member of a consumer group."""

    def __init__(
        self,
        connection: AbstractConnection,
        group: str,
        member: str,
        topics: Sequence[str],
        partitions: int,
        prefetch: int,
        heartbeat: float,
        on_revoke: RevokeHandler | None,
        closer: Callable[[RabbitMember], Awaitable[None]],
        delays: set[str],
    ) -> None:
        self.connection = connection
        self.group = group
        self.member = member
        self.topics = list(topics)
        self.partitions = partitions
        self.parts = {t: [Partition(t, group, p) for p in range(partitions)] for t in topics}
        #: Per owned partition (channel): the buffer holds what core did not take yet.
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.on_revoke = on_revoke
        self._closer = closer
        #: The broker's record of the delay queues its members declared.
        self.delays = delays
        self.buffer: deque[RabbitDelivery] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self._control: AbstractChannel | None = None
        self._confirming: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._start = zlib.crc32(member.encode())
        #: Topics whose partitions this member must not take (a seek refills them).
        self.held: set[str] = set()
        self._rebalancing = asyncio.Lock()
        #: Partitions with acks to send, and the task sending them.
        self._dirty: set[Partition] = set()
        self._flusher: asyncio.Task[None] | None = None

    # -- membership ------------------------------------------------------------------

    async def start(self) -> None:
        self._control = await self.connection.channel(publisher_confirms=False)
        self._confirming = await self.connection.channel(publisher_confirms=True)
        for topic in self.topics:
            roster = await self._control.declare_queue(
                members_queue(topic, self.group), auto_delete=True
            )
            # The consumer tags name the members (tidings groups lists them).
            await roster.consume(_ignore, no_ack=True, consumer_tag=f"{self.member}/{topic}")
        await self.rebalance()
        self._task = asyncio.create_task(self._keep_share(), name="tidings-rabbitmq-group")

    async def _keep_share(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.rebalance()
            except (AMQPError, OSError, RuntimeError) as exc:
                if self.closed or not alive(self.connection):
                    self.wake.set()
                    return
                log.warning("%s: checking the group's partitions failed: %r", self.group, exc)

    async def rebalance(self) -> None:
        """Give up partitions beyond this member's share; take free ones up to it.

        One at a time: taking a lock another member holds makes the server close the
        channel, and a channel opened on the connection meanwhile could get its number
        before aiormq answered the close (which closes the connection)."""
        async with self._rebalancing:
            await self._rebalance()

    async def _rebalance(self) -> None:
        control = self._control
        assert control is not None
        for topic, parts in self.parts.items():
            if topic in self.held:
                continue
            roster = await control.declare_queue(members_queue(topic, self.group), auto_delete=True)
            result = roster.declaration_result
            members = max(int(result.consumer_count or 1), 1)
            share = math.ceil(self.partitions / members)
            owned = [p for p in parts if p.owned]
            for part in owned[share:]:
                await self.release(part, revoke=True)
            have = min(len(owned), share)
            for step in range(self.partitions):
                if have >= share or self.closed:
                    break
                part = parts[(self._start + step) % self.partitions]
                if not part.owned and await self._take(part):
                    have += 1

    async def _take(self, part: Partition) -> bool:
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(part.lock, exclusive=True, auto_delete=True)
        except AMQPError:  # RESOURCE_LOCKED: another member owns it
            with contextlib.suppress(Exception):
                await channel.close()
            return False
        epoch = part.epoch

        async def receive(incoming: AbstractIncomingMessage) -> None:
            self._receive(part, epoch, incoming)

        try:
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(part.queue, durable=True, arguments=PARTITION)
            await queue.consume(receive, no_ack=False, consumer_tag=self.member)
        except BaseException:
            # Never keep a lock without consuming: the partition would stall.
            with contextlib.suppress(Exception):
                await channel.close()
                assert self._control is not None
                await self._control.queue_delete(part.lock)
            raise
        part.owned = True
        part.channel = channel
        log.debug("%s: %s owns %s", self.group, self.member, part.queue)
        return True

    def _receive(self, part: Partition, epoch: int, incoming: AbstractIncomingMessage) -> None:
        if epoch != part.epoch or self.closed:
            return  # the channel is closing: the message goes back to the queue
        key, headers, attempt, published = read(incoming)
        delivery = RabbitDelivery(
            self,
            part,
            incoming,
            part.topic,
            part.index,
            key,
            headers,
            self.group,
            attempt,
            published,
        )
        message_id = incoming.message_id or ""
        if part.nacked.pop(message_id, None) is not None and key is not None:
            part.returned.add(incoming.delivery_tag or 0)
            waiting = part.retrying.get(key)
            # The key's latest retry is back (its message TTL may end a little before
            # the due time noted after the copy was confirmed).
            if waiting is not None and (waiting[2] == message_id or waiting[1] <= time.time()):
                del part.retrying[key]
        part.unacked[incoming.delivery_tag or 0] = delivery
        self.buffer.append(delivery)
        self.wake.set()

    async def release(self, part: Partition, *, revoke: bool) -> None:
        """Give ``part`` up: unacked messages go back (behind their key's retry)."""
        if not part.owned:
            return
        part.owned = False
        await self.flush(part)  # what core acked goes out on this channel before it closes
        held = list(part.unacked.values())  # in the order received
        nacked = list(part.nacked.values())
        retrying = dict(part.retrying)
        returned = set(part.returned)
        log.debug(
            "%s: %s releases %s holding %s (retrying %s, returned %s)",
            self.group, self.member, part.queue,
            [(d.incoming.delivery_tag, d.value) for d in held], sorted(retrying), sorted(returned),
        )  # fmt: skip
        channel = part.channel
        part.channel = None
        part.fence()
        for delivery in (*held, *nacked):
            delivery.settled = True
        self.buffer = deque(d for d in self.buffer if d._part is not part)
        for delivery in held:
            behind = retrying.get(delivery.key) if delivery.key is not None else None
            if behind is not None:
                with contextlib.suppress(AMQPError, OSError, RuntimeError):
                    await self._delay_copy(delivery, behind[0], delivery.attempt - 1)
                    await delivery.incoming.ack()
        await self._put_retries_first(part, held, retrying, returned)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()
        if self._control is not None and not self._control.is_closed:
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                await self._control.queue_delete(part.lock)
        handed = [d for d in held if not _buffered(d)]
        if revoke and self.on_revoke is not None and (handed or nacked):
            self.on_revoke([*handed, *nacked])

    async def _put_retries_first(
        self,
        part: Partition,
        held: list[RabbitDelivery],
        retrying: dict[str, tuple[str, float, str]],
        returned: set[int],
    ) -> None:
        """A retry that came back after later events of its key were received: closing
        the channel would return them in the order received (the later events first), so
        they go back through a delay queue of 1 ms instead, the retries first."""
        by_key: dict[str, list[RabbitDelivery]] = {}
        for delivery in held:
            if delivery.key is not None and delivery.key not in retrying:
                by_key.setdefault(delivery.key, []).append(delivery)
        for mine in by_key.values():

            def came_back(d: RabbitDelivery) -> bool:
                return (d.incoming.delivery_tag or 0) in returned

            order = [d for d in mine if came_back(d)] + [d for d in mine if not came_back(d)]
            if order == mine or self._control is None:
                continue
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                queue = await declare_delay(self._control, part.queue, 1)
                self.delays.add(queue)
                for delivery in order:
                    await self._delay_copy(delivery, queue, delivery.attempt - 1)
                for delivery in order:
                    await delivery.incoming.ack()

    async def hold(self, topic: str) -> None:
        """Give up ``topic``'s partitions (revoking what was handed out) and take none
        until :meth:`resume`."""
        self.held.add(topic)
        for part in self.parts.get(topic, ()):
            await self.release(part, revoke=True)

    async def resume(self, topic: str) -> None:
        self.held.discard(topic)
        if not self.closed and alive(self.connection):
            try:
                await self.rebalance()
            except (AMQPError, OSError, RuntimeError) as exc:
                log.warning("%s: taking partitions back failed: %r", self.group, exc)

    # -- fetching -------------------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not alive(self.connection):
                raise BrokerUnavailable(f"the connection of group {self.group!r} was lost")
            if self.buffer:
                out: list[Delivery] = []
                while self.buffer and len(out) < max_count:
                    delivery = self.buffer.popleft()
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
                await asyncio.wait_for(self.wake.wait(), min(remaining, self.heartbeat))
        return []

    # -- settling ---------------------------------------------------------------------------

    def settle_ack(self, part: Partition, delivery: RabbitDelivery) -> None:
        """Queue the ack: one task sends, per partition, one ``basic.ack`` with ``multiple``
        for every settled tag below the lowest unsettled one (a handler waits for no
        round trip, and a burst of acks is one frame). An ack not sent when the process
        dies is lost like an unsettled message: the message comes again."""
        if delivery.fenced():
            return
        tag = delivery.incoming.delivery_tag or 0
        if part.unacked.pop(tag, None) is None:
            return
        part.acks[tag] = delivery
        self._kick(part)

    def _kick(self, part: Partition) -> None:
        self._dirty.add(part)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_dirty())

    async def _flush_dirty(self) -> None:
        while self._dirty:
            await self.flush(self._dirty.pop())

    async def flush(self, part: Partition) -> None:
        """Send ``part``'s queued acks that no unsettled delivery sits below (a ``multiple``
        ack of a tag covers every lower one on the channel: never one still unsettled)."""
        if not part.acks:
            return
        floor = min(part.unacked) if part.unacked else None
        ready = [tag for tag in part.acks if floor is None or tag < floor]
        if not ready:
            return
        top = part.acks[max(ready)]
        for tag in ready:
            del part.acks[tag]
        with contextlib.suppress(AMQPError, OSError, RuntimeError):
            await top.incoming.ack(multiple=True)

    async def settle_nack(self, part: Partition, delivery: RabbitDelivery, delay: float) -> None:
        # The delivery stays unsettled (in ``unacked``) until its nack or its copy and ack
        # are written: a queued multiple ack must not cover it before.
        if delivery.fenced():
            return
        tag = delivery.incoming.delivery_tag or 0
        queue = ""
        try:
            if delay <= 0:
                await delivery.incoming.nack(requeue=True)
            else:
                assert self._control is not None
                queue = await declare_delay(self._control, part.queue, delay_bucket(delay))
                self.delays.add(queue)
                await self._delay_copy(delivery, queue, delivery.attempt)
                await delivery.incoming.ack()
        except (AMQPError, OSError, RuntimeError) as exc:
            # Not settled: it comes again when this member's channel closes.
            log.warning("%s: nack of %s failed: %r", self.group, delivery.id, exc)
            return
        if part.unacked.pop(tag, None) is not None and part.acks:
            self._kick(part)  # acks queued above it can go now
        if delay <= 0:
            return
        part.nacked[delivery.incoming.message_id or ""] = delivery
        if delivery.key is not None:
            due = time.time() + delay
            known = part.retrying.get(delivery.key)
            if known is None or known[1] < due:
                part.retrying[delivery.key] = (queue, due, delivery.incoming.message_id or "")

    async def _delay_copy(self, delivery: RabbitDelivery, queue: str, attempts: int) -> None:
        channel = self._confirming
        assert channel is not None
        await channel.default_exchange.publish(copy(delivery.incoming, attempts), queue)

    # -- closing ------------------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        await self._closer(self)

    async def stop(self) -> None:
        """Give every partition back and close the connection (the broker's closer)."""
        self.closed = True
        self.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for parts in self.parts.values():
            for part in parts:
                with contextlib.suppress(Exception):
                    await self.release(part, revoke=False)
        if self._flusher is not None:
            with contextlib.suppress(BaseException):
                await self._flusher
        await close_connection(self.connection)


def _buffered(delivery: RabbitDelivery) -> bool:
    return not delivery.handed


async def _ignore(_: AbstractIncomingMessage) -> None:
    return None
