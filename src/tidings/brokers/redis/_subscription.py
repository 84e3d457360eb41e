"""One group member: reading the partitions it owns, settling, taking partitions over.

The member reads the streams of the partitions whose lease it holds (the
:class:`~._group.Coordinator` takes and gives them) with one ``XREADGROUP ... >``
over all of them. A nacked entry stays pending with the member; when its delay
is over, :data:`~._scripts.REDELIVER` claims it again (a delivery more in the
entry's counter: the attempt). Taking a partition over, the member claims every
entry pending in the group on that stream (``XAUTOCLAIM``): what the previous
owner held, nacked or had read ahead. Their retry times come from the partition's
``dues`` hash; later entries of their keys wait behind them (barriers), so a key
keeps its order across the hand-over. Each heartbeat the owner also sweeps
entries idle longer than the session (read by a member that lost the lease
while reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers.redis._binding import parse_entry, split_id
from tidings.brokers.redis._delivery import RedisDelivery, Source
from tidings.errors import BrokerUnavailable

__all__ = ["RedisSubscription", "Scripts"]

log = logging.getLogger("tidings.brokers.redis")

#: Longest one XREADGROUP blocks: a nack, a new partition or a close is seen this soon.
_MAX_BLOCK = 0.1


class Scripts:
    """The registered Lua scripts (see :mod:`._scripts`)."""

    def __init__(self, client: Redis) -> None:
        from tidings.brokers.redis import _scripts

        self.publish = client.register_script(_scripts.PUBLISH)
        self.ack = client.register_script(_scripts.ACK)
        self.delay = client.register_script(_scripts.DELAY)
        self.redeliver = client.register_script(_scripts.REDELIVER)
        self.renew = client.register_script(_scripts.RENEW_LEASE)
        self.drop = client.register_script(_scripts.DROP_LEASE)
        self.sweep = client.register_script(_scripts.SWEEP)
        self.release = client.register_script(_scripts.RELEASE)


class RedisSubscription:
    """A :class:`~tidings.broker.Subscription`: one member of a consumer group."""

    def __init__(
        self,
        client: Redis,
        scripts: Scripts,
        group: str,
        consumer: str,
        sources: Sequence[Source],
        on_revoke: RevokeHandler | None,
        prefetch: int,
        closer: Callable[[RedisSubscription], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.group = group
        self.consumer = consumer
        self.sources = list(sources)
        self.by_stream = {s.stream.encode(): s for s in self.sources}
        self.on_revoke = on_revoke
        self.prefetch = prefetch
        self._closer = closer
        self.buffer: deque[RedisDelivery] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        #: Acks not sent yet, by partition and the lease token they were made under.
        self._acks: dict[tuple[Source, str], list[bytes]] = {}
        self._acking: asyncio.Task[None] | None = None

    # -- fetching ----------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        try:
            return await self._fetch(max_count, timeout)
        except (OSError, redis.exceptions.RedisError) as exc:
            if self.closed:
                return []
            raise BrokerUnavailable(
                f"reading group {self.group!r} from Redis failed: {exc!r}"
            ) from exc

    async def _fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            await self._due(max_count)
            if self.buffer:
                return self._take(max_count)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, _MAX_BLOCK, self._until_due())
            owned = [s for s in self.sources if s.owned]
            credit = self.prefetch - sum(len(s.held) + len(s.waiting) for s in self.sources)
            self.wake.clear()
            if owned and credit > 0:
                await self._read(owned, min(max_count, credit), wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
        return []

    def _until_due(self) -> float:
        dues = [d for s in self.sources if (d := s.waiting.next_due()) is not None]
        return max(min(dues) - time.time(), 0.001) if dues else _MAX_BLOCK

    def _take(self, max_count: int) -> list[Delivery]:
        out: list[Delivery] = []
        buffer = self.buffer
        while buffer and len(out) < max_count:
            delivery = buffer.popleft()
            if delivery.fenced():
                continue
            source = delivery._source
            source.nacked.pop(delivery.offset, None)
            source.held[delivery.offset] = delivery
            out.append(delivery)
        return out

    async def _read(self, owned: list[Source], count: int, wait: float) -> None:
        streams: dict[Any, Any] = {s.stream: ">" for s in owned}
        epochs = {s.stream: s.epoch for s in owned}
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, streams, count=count, block=max(int(wait * 1000), 1)
        )
        for stream, entries in reply or []:
            source = self.by_stream[stream if isinstance(stream, bytes) else stream.encode()]
            if epochs[source.stream] != source.epoch or not source.owned:
                # Read while the partition moved: they are pending with this consumer.
                # The next owner claims them; if that is this member again, it must too.
                source.stale = True
                continue
            if source.stale or await self._others_hold(source):
                source.stale = False
                # A member that lost this partition (a zombie, or a read it sent before
                # it lost the lease) was handed earlier entries after our take-over:
                # claim them first, so that later entries of their keys wait behind.
                await self.sweep(source, 0)
                if epochs[source.stream] != source.epoch or not source.owned:
                    continue
            for stream_id, fields in entries:
                delivery = self._delivery(source, stream_id, fields, 1)
                held_until = source.waiting.barrier(delivery.key, delivery.offset)
                if held_until is not None:
                    # Behind an earlier entry of its key that still waits, even when
                    # that one is due already: the queue hands them out in order.
                    source.waiting.push(held_until, delivery.offset)
                    source.waiting_entries[delivery.offset] = delivery
                else:
                    self.buffer.append(delivery)

    async def _others_hold(self, source: Source) -> bool:
        """Whether another consumer of the group has entries of ``source`` pending."""
        summary: Any = await self.client.xpending(source.stream, self.group)
        mine = self.consumer
        for consumer in summary.get("consumers") or ():
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if name != mine and int(consumer["pending"]) > 0:
                return True
        return False

    def _delivery(
        self, source: Source, stream_id: bytes, fields: Sequence[bytes], attempt: int
    ) -> RedisDelivery:
        value, key, headers = parse_entry(fields)
        ms, offset = split_id(stream_id)
        return RedisDelivery(
            self, source, stream_id, offset, key, value, headers, self.group, attempt, ms / 1000
        )

    async def _due(self, limit: int) -> None:
        """Move what waited for its time into the buffer (claiming retries again)."""
        now = time.time()
        for source in self.sources:
            if not source.owned or source.waiting.next_due() is None:
                continue
            claims: list[bytes] = []
            for offset in source.waiting.pop_due(now, limit):
                entry = source.waiting_entries.pop(offset)
                if isinstance(entry, RedisDelivery):
                    source.waiting.delivered(entry.key, offset)
                    self.buffer.append(entry)
                else:
                    claims.append(entry)
            if claims:
                for delivery in await self._claim(source, claims):
                    source.waiting.delivered(delivery.key, delivery.offset)
                    self.buffer.append(delivery)

    async def _claim(self, source: Source, ids: Sequence[bytes]) -> list[RedisDelivery]:
        """Claim ``ids`` for this member again, as new deliveries (fenced by the lease)."""
        epoch = source.epoch
        found = await self.scripts.redeliver(
            keys=[source.lease, source.stream, source.dues],
            args=[source.token, self.group, self.consumer, *ids],
        )
        if not found or epoch != source.epoch:
            return []
        return [self._delivery(source, i, fields, int(count)) for i, fields, count, _ in found]

    # -- settling ------------------------------------------------------------------

    def settle_ack(self, source: Source, delivery: RedisDelivery) -> None:
        """Queue the ack; one task sends what queued meanwhile (one script call per
        partition), so a handler never waits for a round trip per event."""
        source.held.pop(delivery.offset, None)
        self._acks.setdefault((source, source.token), []).append(delivery.stream_id)
        if self._acking is None:
            self._acking = asyncio.create_task(self._send_acks(), name="tidings-redis-acks")

    async def _send_acks(self) -> None:
        try:
            while self._acks:
                acks, self._acks = self._acks, {}
                for (source, token), ids in acks.items():
                    try:
                        await self.scripts.ack(
                            keys=[source.lease, source.stream, source.dues],
                            args=[token, self.group, *ids],
                        )
                    except (OSError, redis.exceptions.RedisError) as exc:
                        # Still pending, unknown here now: the idle sweep brings them back.
                        log.warning(
                            "%s: ack of %d entries of %s failed (%r); they will come again",
                            self.group,
                            len(ids),
                            source.stream,
                            exc,
                        )
        finally:
            self._acking = None

    async def acks_sent(self) -> None:
        """Wait until every ack queued so far has been sent."""
        while (task := self._acking) is not None:
            await asyncio.shield(task)

    async def settle_nack(self, source: Source, delivery: RedisDelivery, delay: float) -> None:
        source.held.pop(delivery.offset, None)
        source.nacked[delivery.offset] = delivery
        due = time.time() + delay
        source.waiting.push(due, delivery.offset)
        source.waiting_entries[delivery.offset] = delivery.stream_id
        self.wake.set()
        if delay > 0:
            try:
                await self.scripts.delay(
                    keys=[source.lease, source.dues],
                    args=[
                        source.token,
                        delivery.stream_id,
                        f"{int(due * 1000)}:{delivery.key or ''}",
                    ],
                )
            except (OSError, redis.exceptions.RedisError) as exc:
                # Only a member taking the partition over would need the time.
                log.warning(
                    "%s: storing the retry time of %s failed: %r", self.group, delivery.id, exc
                )

    async def give_back(self, source: Source, delivery: RedisDelivery) -> None:
        """Unhandled: set the delivery counter back and deliver it again, same attempt."""
        source.held.pop(delivery.offset, None)
        source.waiting.push(time.time(), delivery.offset)
        source.waiting_entries[delivery.offset] = delivery.stream_id
        self.wake.set()
        with contextlib.suppress(OSError, redis.exceptions.RedisError):
            await self.scripts.release(
                keys=[source.lease, source.stream],
                args=[
                    source.token,
                    self.group,
                    self.consumer,
                    delivery.stream_id,
                    delivery.attempt - 1,
                ],
            )

    async def keep(self, source: Source, delivery: RedisDelivery) -> None:
        with contextlib.suppress(OSError, redis.exceptions.RedisError):
            await self.client.xclaim(
                source.stream, self.group, self.consumer, 0, [delivery.stream_id], justid=True
            )

    # -- ownership -------------------------------------------------------------------

    async def own(self, source: Source, token: str) -> None:
        """The lease is ours: claim everything pending in the group on this stream."""
        source.token = token
        source.owned = True
        await self.sweep(source, 0)
        self.wake.set()
        await self.prune(source)

    async def prune(self, source: Source, *, leaving: bool = False) -> None:
        """Delete consumers of the group on ``source`` that hold nothing: this member's
        when it leaves, others' idle for a minute (members gone). Each member id is a
        new Redis consumer; they would pile up."""
        consumers: Any = await self.client.xinfo_consumers(source.stream, self.group)
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            mine = name == self.consumer
            gone = not mine and consumer["idle"] > 60_000
            if not consumer["pending"] and (mine if leaving else gone):
                await self.client.xgroup_delconsumer(source.stream, self.group, name)

    async def sweep(self, source: Source, min_idle: float) -> None:
        """Claim the group's entries on ``source`` idle ``min_idle`` seconds, unknown here."""
        epoch = source.epoch
        ids = await self.scripts.sweep(
            keys=[source.stream], args=[self.group, self.consumer, int(min_idle * 1000)]
        )
        found = [i for i in ids if not source.tracked(i)]
        if not found or epoch != source.epoch:
            return
        claimed = await self.scripts.redeliver(
            keys=[source.lease, source.stream, source.dues],
            args=[source.token, self.group, self.consumer, *found],
        )
        if not claimed or epoch != source.epoch:
            return
        now = time.time()
        key_due: dict[str | None, float] = {}
        for stream_id, fields, count, due in sorted(claimed, key=lambda c: split_id(c[0])):
            delivery = self._delivery(source, stream_id, fields, int(count))
            wanted = float(due.split(b":", 1)[0]) / 1000 if due else now
            wanted = max(wanted, key_due.get(delivery.key, 0.0))
            if delivery.key is not None:
                key_due[delivery.key] = wanted
                source.waiting.add_barrier(delivery.key, wanted, delivery.offset)
            source.waiting.push(wanted, delivery.offset)
            source.waiting_entries[delivery.offset] = delivery
        log.debug("%s: claimed %d pending entries of %s", self.group, len(claimed), source.stream)

    async def release(self, source: Source, *, revoke: bool) -> None:
        """Give ``source`` up: core is told what it lost; the entries stay pending."""
        if not source.owned:
            return
        with contextlib.suppress(Exception):
            await self.acks_sent()  # while the lease is still ours
        lost: list[RedisDelivery] = sorted(
            (*source.held.values(), *source.nacked.values()), key=lambda d: d.offset
        )
        for delivery in lost:
            delivery.settled = True
        token = source.token
        source.fence()
        source.owned = False
        self.buffer = deque(d for d in self.buffer if d._source is not source)
        with contextlib.suppress(Exception):
            await self.scripts.drop(keys=[source.lease], args=[token])
        if revoke and lost and self.on_revoke is not None:
            self.on_revoke(lost)

    def forget(self, source: Source) -> None:
        """A seek moved the group: drop what ``source`` held or buffered (now fenced)."""
        for delivery in (*source.held.values(), *source.nacked.values()):
            delivery.settled = True
        source.fence()
        self.buffer = deque(d for d in self.buffer if d._source is not source)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        if self._closer is not None:
            await self._closer(self)
