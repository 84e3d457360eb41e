"""One group member (or group-less reader): pull requests, deliveries, hand-over.

The member reads the durable pull consumers of the partitions it owns (the
:class:`~tidings.brokers.nats._group.Coordinator` decides which). All replies
come to one inbox, read as raw bytes (see :mod:`._client`); the last token of
a reply subject names the source. Pull requests keep what this member holds
unsettled, has buffered and has asked for within the subscription's prefetch
(a group-less reader, which tracks nothing it handed out: within the caller's
``max_count``). A fetch that hands deliveries out asks for more at once, so
the next ones arrive while these are handled.

Handing a partition over (:meth:`NatsSubscription.release`) waits for the pull
request in flight, fences the partition's deliveries, tells core which ones it
lost, and naks them all in stream order, delayed ones included: JetStream
queues naked messages for redelivery in the order it gets the naks, so the
next owner receives a key's retried message before its later ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from nats.aio.subscription import Subscription as NatsSub

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers.nats._binding import ack_info, pull_status, read_headers
from tidings.brokers.nats._client import FastHeaderClient
from tidings.brokers.nats._delivery import NatsDelivery, Source

if TYPE_CHECKING:
    from tidings.brokers.nats._group import Coordinator

__all__ = ["NatsSubscription"]

log = logging.getLogger("tidings.brokers.nats")

#: Longest a pull request waits at the server (a hand-over or close waits for it).
_MAX_EXPIRES = 1.0


class NatsSubscription:
    """A :class:`~tidings.broker.Subscription` over JetStream pull consumers."""

    def __init__(
        self,
        client: FastHeaderClient,
        group: str | None,
        sources: Sequence[Source],
        on_revoke: RevokeHandler | None,
        closer: Callable[[NatsSubscription], Awaitable[None]] | None = None,
        prefetch: int = 256,
    ) -> None:
        self.client = client
        self.group = group
        self.sources = list(sources)
        self.prefetch = prefetch
        #: Consumer names are unique per subscription (one group, one consumer per source).
        self.by_consumer = {(s.stream.encode(), s.consumer.encode()): s for s in self.sources}
        self.on_revoke = on_revoke
        self._closer = closer
        self.inbox = client.new_inbox()
        self.buffer: deque[NatsDelivery] = deque()
        self.arrived = asyncio.Event()
        self.closed = False
        self._inbox_sub: NatsSub | None = None
        self._turn = 0
        self._group_name = group or ""
        #: The group coordinator (members only; set by the broker).
        self.coordinator: Coordinator | None = None

    async def start(self) -> None:
        self._inbox_sub = await self.client.subscribe_raw(self.inbox + ".*", self._on_message)

    # -- receiving -------------------------------------------------------------

    def _on_message(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        info = ack_info(reply)
        if info is None:  # a status for one of our pull requests, on its reply subject
            status = pull_status(headers)
            if status is not None:
                try:
                    source = self.sources[int(subject.rsplit(b".", 1)[1])]
                except (ValueError, IndexError):
                    return
                source.outstanding = 0  # 408 expired, 409 ended, 404 nothing: done
                # Expired before it was filled: the consumer had no more to give.
                source.backlog = status[1]
                self.arrived.set()
            return
        stream, consumer, attempt, sequence, published_at, pending = info
        found = self.by_consumer.get((stream, consumer))
        if found is None:
            return
        source = found
        if source.outstanding > 0:
            source.outstanding -= 1
        source.backlog = pending
        own, key = read_headers(headers)
        partition = source.partition
        if partition < 0:
            partition = _partition_of(subject)
        delivery = NatsDelivery(
            self.client,
            source,
            reply,
            partition,
            sequence - 1,
            key,
            data,
            own,
            self._group_name,
            attempt,
            published_at,
        )
        if not source.owned or self.closed:
            if source.acks:
                delivery.give_back()
            return
        self.buffer.append(delivery)
        self.arrived.set()

    def _take(self, max_count: int) -> list[Delivery]:
        out: list[Delivery] = []
        kept: list[NatsDelivery] = []
        buffer = self.buffer
        while buffer and len(out) < max_count:
            delivery = buffer.popleft()
            source = delivery._source
            if source.releasing:
                kept.append(delivery)  # handed over once its pull request ends
                continue
            if delivery.fenced():
                continue
            if source.acks:
                sequence = delivery.offset + 1
                if source.nacked:
                    source.nacked.pop(sequence, None)
                source.held[sequence] = delivery
            out.append(delivery)
        if kept:
            buffer.extendleft(reversed(kept))
        return out

    # -- fetching ----------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            if self.closed:
                return []
            out = self._take(max_count)
            if out:
                # The next deliveries come while these are handled (core may handle
                # them without yielding to the loop: the requests leave now).
                self._request(max_count - len(out), timeout)
                self.client.write_pending()
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.arrived.clear()
            self._request(max_count, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def _request(self, max_count: int, timeout: float) -> None:
        """Send pull requests within the prefetch, less what is held, buffered or asked for.

        Members count what core holds unsettled (``held``); a group-less reader
        tracks none of it and keeps within ``max_count`` (what core takes now)
        instead. A drained partition (its consumer had nothing left at its last
        delivery) always gets a request for one message, outside the count: it
        waits for new messages without holding back the others (so a member may
        take one message per drained partition beyond its prefetch). The credit
        is shared among the others, each asked for no more than its consumer has.
        """
        now = time.monotonic()
        credit = max_count
        if self.group is not None:
            credit = max(credit, self.prefetch - sum([len(s.held) for s in self.sources]))
        credit -= len(self.buffer)
        idle: list[Source] = []
        busy: list[Source] = []
        for source in self.sources:
            if source.outstanding and now > source.deadline:
                source.outstanding = 0  # its end was lost (a reconnect): ask again
            if source.backlog != 0:
                credit -= source.outstanding
            if source.owned and not source.releasing and not source.outstanding:
                (idle if source.backlog == 0 else busy).append(source)
        expires = min(max(timeout, 0.05), _MAX_EXPIRES)
        for source in idle:
            self._pull(source, 1, expires, now)
        if credit <= 0 or not busy:
            return
        self._turn = (self._turn + 1) % len(busy)
        busy = busy[self._turn :] + busy[: self._turn]
        for i, source in enumerate(busy):
            if credit <= 0:
                break
            batch = max(1, credit // (len(busy) - i))
            if source.backlog is not None:
                batch = min(batch, max(source.backlog, len(source.nacked), 1))
            credit -= batch
            self._pull(source, batch, expires, now)

    def _pull(self, source: Source, batch: int, expires: float, now: float) -> None:
        source.outstanding = batch
        source.deadline = now + expires + 1.0
        self.client.publish_soon(
            b"$JS.API.CONSUMER.MSG.NEXT.%s.%s" % (source.stream.encode(), source.consumer.encode()),
            b'{"batch":%d,"expires":%d}' % (batch, int(expires * 1e9)),
            reply=b"%s.%d" % (self.inbox.encode(), source.index),
        )

    # -- hand-over -----------------------------------------------------------------

    async def quiesce(self, source: Source) -> None:
        """Stop asking ``source`` for messages and wait for the request in flight to end."""
        source.releasing = True
        while source.outstanding and time.monotonic() < source.deadline:
            self.arrived.clear()  # set by every delivery and by the request's end
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), source.deadline - time.monotonic())
        source.outstanding = 0
        self.arrived.set()  # a fetch waiting meanwhile looks again

    async def release(self, source: Source, *, revoke: bool) -> None:
        """Give up ``source``: core is told what it lost, JetStream gets all of it back."""
        if not source.owned:
            return
        await self.quiesce(source)
        lost = sorted((*source.held.values(), *source.nacked.values()), key=_sequence)
        latest = {d.offset: d for d in lost}
        for delivery in self.buffer:  # a redelivery replaces the nacked one it repeats
            if delivery._source is source and not delivery.fenced():
                latest[delivery.offset] = delivery
        source.fence()
        source.owned = False
        source.releasing = False
        self.buffer = deque(d for d in self.buffer if d._source is not source)
        for offset in sorted(latest):
            latest[offset].give_back()
        log.debug(
            "%s: handed partition %d of %s over (%d back, %d revoked)",
            self.group,
            source.partition,
            source.topic,
            len(latest),
            len(lost),
        )
        if revoke and lost and self.on_revoke is not None:
            self.on_revoke(lost)
        # The naks reach the server before the lease goes (nats-py writes a flush's
        # PING at once, ahead of what waits in its outbound buffer).
        self.client.write_pending()
        await self.client.flush()

    def own(self, source: Source, revision: int | None) -> None:
        log.debug("%s: owns partition %d of %s", self.group, source.partition, source.topic)
        source.revision = revision
        source.owned = True
        source.releasing = False
        self.arrived.set()

    def forget(self, source: Source) -> list[Delivery]:
        """A seek moved the group: drop what ``source`` held or buffered (now fenced)."""
        lost: list[Delivery] = [*source.held.values(), *source.nacked.values()]
        for delivery in source.held.values():
            delivery.settled = True
        for delivery in source.nacked.values():
            delivery.settled = True
        source.fence()
        source.outstanding = 0
        self.buffer = deque(d for d in self.buffer if d._source is not source)
        return lost

    # -- closing -------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.arrived.set()
        if self._closer is not None:
            await self._closer(self)

    async def hand_back(self) -> None:
        """Release every source (group members: nak what they hold, in order)."""
        for source in self.sources:
            if source.acks and source.owned:
                await self.release(source, revoke=False)

    async def unsubscribe(self) -> None:
        sub, self._inbox_sub = self._inbox_sub, None
        if sub is not None and not self.client.is_closed:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribing %s failed", self.inbox, exc_info=True)


def _sequence(delivery: NatsDelivery) -> int:
    return delivery.offset


def _partition_of(subject: bytes) -> int:
    """A reader's message: the partition is the last token of its subject."""
    try:
        return int(subject.rsplit(b".", 1)[1])
    except (ValueError, IndexError):
        return 0
