"""A consumer group member (or a group-less reader) on an aiokafka consumer.

Fetching hands out due local redeliveries first, then records read from
Kafka. Acks move each partition's settled prefix, committed every
``commit_interval`` and when partitions are revoked or the member closes.

Rebalancing: aiokafka has only Kafka's eager protocol (every partition is
revoked, then the new assignment arrives). At revocation the member commits
and parks its partitions; when the assignment arrives it keeps those it got
back (with their deliveries in flight, reading on where it was) and reports
the rest to ``on_revoke``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers._timer import WakeTimer
from tidings.brokers.kafka._client import stop_consumer, unavailable
from tidings.brokers.kafka._marks import HandedMarks
from tidings.brokers.kafka._offsets import GroupOffsets
from tidings.brokers.kafka._partition import KafkaDelivery, Partition
from tidings.brokers.kafka._url import KafkaConfig
from tidings.errors import ConfigurationError

__all__ = ["KafkaSubscription"]

log = logging.getLogger("tidings.kafka")

#: Records read from Kafka at a time (one handed-out mark stored for each read).
READ_AHEAD = 2048


class KafkaSubscription:
    def __init__(
        self,
        config: KafkaConfig,
        consumer: Any,
        group: str,
        *,
        grouped: bool,
        marks: HandedMarks | None,
        on_revoke: RevokeHandler | None,
        offsets: GroupOffsets | None = None,
        latest: dict[Any, int] | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.group = group
        self.grouped = grouped
        self.closed = False
        self._marks = marks
        self._on_revoke = on_revoke
        self._offsets = offsets
        #: start="latest": each partition's end when the member subscribed, where a
        #: partition without a committed offset starts (not where it ends at the join).
        self._latest = latest
        self._parts: dict[Any, Partition] = {}
        self._parked: dict[Any, Partition] = {}
        #: Records read from Kafka (their marks stored), not yet handed out.
        self._buffer: deque[tuple[Partition, Any]] = deque()
        self._timer = WakeTimer()
        self.wake = self._timer.wake
        self.assigned = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start_committing(self) -> None:
        if self.grouped:
            self._committer = asyncio.get_running_loop().create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.config.commit_interval)
            await self.commit()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        self._timer.event.set()
        if self._committer is not None:
            self._committer.cancel()
        if self.grouped:
            await self.commit()
        for part in [*self._parts.values(), *self._parked.values()]:
            part.lose()
        await stop_consumer(self.consumer, self.config.session_timeout, f"member of {self.group}")

    # -- rebalancing (called by aiokafka's coordinator) ----------------------------------

    async def partitions_revoked(self, revoked: Any) -> None:
        await self.commit()
        # Unhanded records of revoked partitions are read again from where the
        # partition was handed up to, if it comes back (or by its next owner).
        gone = {(tp.topic, tp.partition) for tp in revoked}
        self._buffer = deque(
            (part, record) for part, record in self._buffer if (part.topic, part.index) not in gone
        )
        for tp in revoked:
            part = self._parts.pop(tp, None)
            if part is not None:
                self._parked[tp] = part

    async def partitions_assigned(self, assigned: Any) -> None:
        consumer = self.consumer
        forgotten = await self._forgotten([tp for tp in assigned if tp in self._parked])
        for tp in assigned:
            part = None if tp in forgotten else self._parked.pop(tp, None)
            if part is not None:
                self._parts[tp] = part
                if part.fetched >= 0:
                    consumer.seek(tp, part.fetched)
        lost: list[Delivery] = []
        for part in self._parked.values():
            lost.extend(part.lose())
        self._parked.clear()
        if lost and self._on_revoke is not None and not self.closed:
            self._on_revoke(lost)
        fresh = [tp for tp in assigned if tp not in self._parts]
        marks: dict[tuple[str, int], int] = {}
        if fresh and self._marks is not None:
            marks = await self._marks.load([(tp.topic, tp.partition) for tp in fresh])
        if fresh and self._latest and self._offsets is not None:
            committed = await self._offsets.fetch(
                self.group, [(tp.topic, tp.partition) for tp in fresh]
            )
            for tp in fresh:
                if (tp.topic, tp.partition) not in committed and tp in self._latest:
                    consumer.seek(tp, self._latest[tp])
        for tp in fresh:
            self.add(tp, marks.get((tp.topic, tp.partition), 0))
        self.assigned.set()
        self._timer.event.set()

    async def _forgotten(self, kept: list[Any]) -> set[Any]:
        """Partitions given back whose committed progress the broker no longer has.

        A broker restarted without its data (tansu with memory storage) has lost
        the log this member read: resuming at its old position would skip the
        new log's first records, so such a partition starts over as a new one.
        """
        if not kept or self._offsets is None:
            return set()
        ours = {tp: self._parked[tp].committed for tp in kept if self._parked[tp].committed > 0}
        if not ours:
            return set()
        try:
            wanted = [(tp.topic, tp.partition) for tp in ours]
            stored = await self._offsets.fetch(self.group, wanted)
        except Exception as exc:  # keep the partitions: the usual case by far
            log.debug("kafka: checking %s's committed offsets failed: %s", self.group, exc)
            return set()
        return {tp for tp, mine in ours.items() if stored.get((tp.topic, tp.partition), -1) < mine}

    def add(self, tp: Any, seen_until: int = 0) -> Partition:
        part = Partition(tp.topic, tp.partition, self.group, seen_until, self.wake)
        self._parts[tp] = part
        return part

    # -- settling ----------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit every partition's settled prefix that moved (failures retry next time)."""
        if not self.grouped:
            return
        async with self._commit_lock:
            offsets: dict[Any, int] = {}
            for tp, part in self._parts.items():
                mark = part.mark
                if mark is not None and mark.committed > part.committed:
                    offsets[tp] = mark.committed
            if not offsets:
                return
            try:
                await self.consumer.commit(offsets)
            except Exception as exc:
                log.debug("kafka: commit for %s deferred: %s", self.group, exc)
                return
            for tp, offset in offsets.items():
                kept = self._parts.get(tp)
                if kept is not None:
                    kept.committed = max(kept.committed, offset)

    async def seek(self, topic: str, offsets: dict[int, int]) -> None:
        """Read ``topic``'s owned partitions from ``offsets`` next (fencing what was handed out)."""
        moved: dict[Any, int] = {}
        for tp in list(self._parts):
            if tp.topic == topic and tp.partition in offsets:
                old = self._parts[tp]
                old.lose()
                part = self.add(tp, old.handed)
                offset = offsets[tp.partition]
                part.mark = None
                self.consumer.seek(tp, offset)
                moved[tp] = offset
        if moved and self.grouped:
            async with self._commit_lock:
                await self.consumer.commit(moved)
        self._timer.event.set()

    def owns(self, topic: str) -> list[int]:
        return [tp.partition for tp in self._parts if tp.topic == topic]

    # -- fetching ------------------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        if max_count < 1:
            raise ConfigurationError("fetch max_count must be >= 1")
        deadline = time.monotonic() + timeout
        event = self._timer.event
        while not self.closed:
            event.clear()
            out: list[KafkaDelivery] = []
            next_due = self._take_due(max_count, out)
            if len(out) < max_count:
                if not self._buffer:
                    await self._buffer_records(await self._read(0, READ_AHEAD))
                self._admit(max_count, out)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if next_due is not None:
                remaining = min(remaining, max(next_due - time.time(), 0.001))
            await self._buffer_records(await self._wait(remaining, READ_AHEAD))
            self._admit(max_count, out)
            if out:
                return out
        return []

    async def _buffer_records(self, batches: dict[Any, list[Any]]) -> None:
        """Keep records read from Kafka, once their handed-out marks are stored."""
        if not batches:
            return
        parts = self._parts
        buffer = self._buffer
        ahead: dict[tuple[str, int], int] = {}
        for tp, records in batches.items():
            part = parts.get(tp)
            if part is None or not records:
                continue
            buffer.extend([(part, record) for record in records])
            end = records[-1].offset + 1
            if end > part.handed:
                ahead[(tp.topic, tp.partition)] = end
        if ahead and self._marks is not None:
            # Marked before any of them is handed out: a crash after this point gives
            # them attempt >= 2 at the next owner (read ahead but unhandled ones too).
            await self._marks.store(ahead)
        for tp in batches:
            part = parts.get(tp)
            if part is not None and (tp.topic, tp.partition) in ahead:
                part.handed = max(part.handed, ahead[(tp.topic, tp.partition)])

    def _admit(self, limit: int, out: list[KafkaDelivery]) -> None:
        buffer = self._buffer
        while buffer and len(out) < limit:
            part, record = buffer.popleft()
            if part.lost:
                continue
            delivery = part.admit(record)
            if delivery is not None:
                out.append(delivery)

    def _take_due(self, limit: int, out: list[KafkaDelivery]) -> float | None:
        next_due: float | None = None
        now = time.time()
        for part in self._parts.values():
            if part.pending.heap:
                if len(out) < limit:
                    part.take_due(now, limit - len(out), out)
                due = part.pending.next_due()
                if due is not None and (next_due is None or due < next_due):
                    next_due = due
        return next_due

    async def _read(self, wait: float, max_records: int) -> dict[Any, list[Any]]:
        try:
            batches: dict[Any, list[Any]] = await self.consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=max_records
            )
        except Exception as exc:
            if self.closed:
                return {}
            raise unavailable(self.config, exc, f"reading as group {self.group}") from exc
        return batches

    async def _wait(self, wait: float, max_records: int) -> dict[Any, list[Any]]:
        """Read for up to ``wait`` seconds, or less if woken (a nack due, a close)."""
        reading = asyncio.ensure_future(self._read(wait, max_records))
        woken = asyncio.ensure_future(self._timer.event.wait())
        try:
            await asyncio.wait((reading, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not reading.done():
                reading.cancel()
                reading.add_done_callback(_retrieve)
        if not reading.done() or reading.cancelled():
            return {}
        return reading.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
