"""A consumer-group member on the embedded broker: partitions, deliveries, settlement.

Acks are recorded in memory at once and written in the background (a crash
before the write means redelivery, which at-least-once allows); the
position only moves past an offset once every earlier one is settled. The
member heartbeats through the writer, which also rebalances the group.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tidings.broker import Delivery
from tidings.brokers._waiting import wait_until
from tidings.brokers.sqlite import _ops

if TYPE_CHECKING:
    from tidings.brokers.sqlite import SqliteBroker

__all__ = ["SqliteDelivery", "SqliteSubscription"]

log = logging.getLogger("tidings.sqlite")
_EMPTY: Mapping[str, str] = {}
_headers = msgspec.json.Decoder(dict[str, str])
_FLUSH_DELAY = 0.02
#: Most rows read from one partition per fetch. The reader must get exactly what
#: is planned: fewer rows than asked for means the rest were removed (retention).
_READ_LIMIT = 1000


class _Partition:
    """What one member knows about one partition it holds."""

    __slots__ = (
        "acked",
        "attempts",
        "committed",
        "cursor",
        "delivered",
        "epoch",
        "gaps",
        "index",
        "inflight",
        "pending",
        "prior_delivered",
        "retry_rows",
        "topic",
        "topic_id",
    )

    def __init__(self, topic: str, state: _ops.Acquired) -> None:
        self.topic = topic
        self.topic_id = state.topic_id
        self.index = state.partition
        self.epoch = state.epoch
        self.committed = state.committed
        self.cursor = state.committed
        self.delivered = state.delivered
        self.prior_delivered = state.delivered
        self.inflight: dict[int, SqliteDelivery] = {}
        self.acked: set[int] = set()
        self.gaps: dict[int, int] = {}
        self.pending: list[tuple[float, int]] = []
        self.attempts: dict[int, int] = {}
        self.retry_rows: set[int] = set()
        for offset, due, attempts in state.retries:
            heapq.heappush(self.pending, (due, offset))
            self.attempts[offset] = attempts
            self.retry_rows.add(offset)

    def _advance(self, committed: int, consume: bool) -> int:
        """Move past settled offsets and gaps (offsets removed by retention or compaction)."""
        acked, gaps = self.acked, self.gaps
        while True:
            if committed in acked:
                if consume:
                    acked.discard(committed)
                committed += 1
            elif committed in gaps:
                committed = gaps.pop(committed) if consume else gaps[committed]
            else:
                return committed

    def settle(self, offset: int) -> None:
        self.inflight.pop(offset, None)
        self.attempts.pop(offset, None)
        if offset == self.committed:
            self.committed = self._advance(offset + 1, consume=True)
        elif offset > self.committed:
            self.acked.add(offset)

    def skip(self, start: int, end: int) -> None:
        """Offsets ``start`` to ``end`` (exclusive) no longer exist: treat them as settled."""
        if start == self.committed:
            self.committed = self._advance(end, consume=True)
        elif start > self.committed:
            self.gaps[start] = end

    def committed_if_settled(self, offset: int) -> int:
        if offset != self.committed:
            return self.committed
        return self._advance(offset + 1, consume=False)

    def update(self) -> _ops.OffsetUpdate:
        return _ops.OffsetUpdate(
            self.topic_id, self.index, self.epoch, self.committed, self.delivered
        )


class SqliteDelivery:
    __slots__ = (
        "_epoch",
        "_member",
        "_part",
        "attempt",
        "group",
        "headers",
        "key",
        "offset",
        "partition",
        "published_at",
        "settled",
        "topic",
        "value",
    )

    def __init__(
        self, member: SqliteSubscription, part: _Partition, row: Sequence[Any], attempt: int
    ) -> None:
        self._member = member
        self._part = part
        self._epoch = part.epoch
        self.topic = part.topic
        self.partition = part.index
        self.offset = int(row[0])
        self.key = row[1]
        self.value = bytes(row[2])
        self.headers = _headers.decode(row[3]) if row[3] else _EMPTY
        self.published_at = float(row[4])
        self.group = member.group
        self.attempt = attempt
        self.settled = False

    def fenced(self) -> bool:
        member = self._member
        return (
            member.closed
            or member.owned.get((self._part.topic_id, self.partition)) is not self._part
            or self._part.epoch != self._epoch
        )

    async def ack(self) -> None:
        if self.settled:
            return
        self.settled = True
        if not self.fenced():
            self._member._acked(self)

    async def nack(self, delay: float = 0.0) -> None:
        if self.settled:
            return
        self.settled = True
        if not self.fenced():
            self._member._nacked(self, max(delay, 0.0))

    def __repr__(self) -> str:
        return (
            f"<SqliteDelivery {self.topic}[{self.partition}]@{self.offset} "
            f"group={self.group} attempt={self.attempt}>"
        )


class SqliteSubscription:
    """One member of a consumer group (the broker's ``subscribe`` returns it)."""

    def __init__(
        self,
        broker: SqliteBroker,
        group: str,
        topics: Sequence[tuple[str, int, int]],
        start_latest: bool,
    ) -> None:
        self.broker = broker
        self.group = group
        self.member_id = f"{time.time():017.6f}-{uuid.uuid4().hex[:12]}"
        self.topics = {topic_id: name for name, topic_id, _ in topics}
        self._topic_partitions = [(topic_id, n) for _, topic_id, n in topics]
        self._start_latest = start_latest
        self.owned: dict[tuple[int, int], _Partition] = {}
        self.closed = False
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._retries_set: list[tuple[int, int, int, int, float, int]] = []
        self._retries_clear: list[tuple[int, int, int, int]] = []
        self._dirty: set[_Partition] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._waiting = False
        self._poked: asyncio.Future[None] | None = None
        #: Live members of the group at the last heartbeat (the watcher compares).
        self.members_seen = 0
        self._flushing: asyncio.Future[None] | None = None

    # -- membership ------------------------------------------------------------

    async def join(self) -> None:
        await self.heartbeat()
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat_loop(), name=f"tidings-sqlite-heartbeat:{self.group}"
        )

    async def _heartbeat_loop(self) -> None:
        while not self.closed:
            # While the group settles (a partition due to us is still held by its
            # previous member), look again soon instead of a whole interval later.
            await asyncio.sleep(0.05 if self._waiting else self.broker.heartbeat_interval)
            try:
                await self.heartbeat()
            except Exception:  # keep trying: a missed heartbeat only risks the lease
                log.exception("heartbeat of group %s failed", self.group)

    async def heartbeat(self) -> None:
        """Renew leases, rebalance, and pick up partitions newly held (or reset by a seek)."""
        if self.closed:
            return
        known = {key: part.epoch for key, part in self.owned.items()}
        updates = [part.update() for part in self._take_dirty()]
        retries_set, retries_clear = self._take_retries()
        broker = self.broker

        def operation(conn: Any) -> Any:
            _ops.flush(conn, self.group, self.member_id, updates, retries_set, retries_clear)
            return _ops.rebalance(
                conn,
                self.group,
                self.member_id,
                self._topic_partitions,
                known,
                self._start_latest,
                broker.session_timeout,
                time.time(),
            )

        result: _ops.Rebalanced = await broker.writer.submit(operation)
        held, acquired = result.held, result.acquired
        self.members_seen = result.members
        self._waiting = result.waiting
        if self.closed:
            return
        for key in list(self.owned):
            if key not in held:
                self._lose(key)
        for state in acquired:
            key = (state.topic_id, state.partition)
            if key in self.owned:
                self._lose(key)
            self.owned[key] = _Partition(self.topics[state.topic_id], state)
        if acquired:
            self.wake()

    def poke(self) -> None:
        """Heartbeat now (the group's membership changed), unless one is running."""
        if self.closed or self._poked is not None:
            return
        self._poked = asyncio.ensure_future(self._poked_heartbeat())

    async def _poked_heartbeat(self) -> None:
        try:
            await self.heartbeat()
        except Exception:
            log.exception("heartbeat of group %s failed", self.group)
        finally:
            self._poked = None

    def _lose(self, key: tuple[int, int]) -> None:
        part = self.owned.pop(key)
        for delivery in part.inflight.values():
            delivery.settled = True
        self._dirty.discard(part)

    # -- fetching ----------------------------------------------------------------

    def wake(self, due: float | None = None) -> None:
        if due is None:
            self._wake.set()
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(due - time.time(), 0.0)
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._wake.set()

    def _plan(
        self, max_count: int, now: float
    ) -> tuple[list[tuple[_Partition, list[int], int]], float | None]:
        """Which offsets to read: due retries and new messages per partition."""
        plan = []
        budget = max_count
        next_due: float | None = None
        heads = self.broker.heads
        for part in self.owned.values():
            if budget <= 0:
                break
            due: list[int] = []
            pending = part.pending
            while pending and pending[0][0] <= now and len(due) < budget:
                due.append(heapq.heappop(pending)[1])
            if pending:
                first = pending[0][0]
                next_due = first if next_due is None else min(next_due, first)
            budget -= len(due)
            fresh = 0
            head = heads.get((part.topic_id, part.index), 0)
            if head > part.cursor and budget > 0:
                fresh = min(budget, head - part.cursor, _READ_LIMIT)
                budget -= fresh
            if due or fresh:
                plan.append((part, due, fresh))
        return plan, next_due

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            self._wake.clear()
            now = time.time()
            plan, next_due = self._plan(max_count, now)
            if plan:
                out = await self._read(plan, now)
                if out:
                    return out
                continue
            if next_due is not None:
                self.wake(next_due)
            if not await wait_until(self._wake, deadline):
                return []
        return []

    async def _read(
        self, plan: list[tuple[_Partition, list[int], int]], now: float
    ) -> list[Delivery]:
        requests = [
            (part.topic_id, part.index, due, part.cursor, fresh) for part, due, fresh in plan
        ]
        requested_end = {id(part): part.cursor + fresh for part, _, fresh in plan}
        results = await self.broker.read_messages(requests)
        out: list[Delivery] = []
        for (part, due, fresh), (due_rows, fresh_rows) in zip(plan, results, strict=True):
            if self.closed or self.owned.get((part.topic_id, part.index)) is not part:
                continue
            found = set()
            for row in due_rows:
                found.add(row[0])
                if row[0] not in part.inflight:
                    out.append(self._deliver(part, row))
            for offset in due:
                if offset not in found:  # removed by retention meanwhile
                    part.settle(offset)
                    self._forget_retry(part, offset)
            for row in fresh_rows:
                offset = int(row[0])
                if offset < part.cursor:
                    continue
                if offset > part.cursor:
                    part.skip(part.cursor, offset)
                part.cursor = offset + 1
                if offset in part.retry_rows or offset in part.acked:
                    continue
                deliver_at = row[5]
                if deliver_at is not None and deliver_at > now:
                    heapq.heappush(part.pending, (float(deliver_at), offset))
                    self.wake(float(deliver_at))
                    continue
                out.append(self._deliver(part, row))
            end = requested_end[id(part)]
            if len(fresh_rows) < fresh and part.cursor < end:
                # Fewer rows than the head promised: the rest were removed by retention.
                part.skip(part.cursor, end)
                part.cursor = end
        return out

    def _deliver(self, part: _Partition, row: Sequence[Any]) -> SqliteDelivery:
        offset = int(row[0])
        previous = part.attempts.get(offset)
        if previous is None:
            previous = 1 if offset <= part.prior_delivered else 0
        delivery = SqliteDelivery(self, part, row, previous + 1)
        part.attempts[offset] = previous + 1
        part.inflight[offset] = delivery
        if offset > part.delivered:
            part.delivered = offset
        return delivery

    # -- settlement ------------------------------------------------------------------

    def _acked(self, delivery: SqliteDelivery) -> None:
        part = delivery._part
        part.settle(delivery.offset)
        self._forget_retry(part, delivery.offset)
        self._dirty.add(part)
        self._schedule_flush()

    def _forget_retry(self, part: _Partition, offset: int) -> None:
        if offset in part.retry_rows:
            part.retry_rows.discard(offset)
            self._retries_clear.append((part.topic_id, part.index, part.epoch, offset))

    def _nacked(self, delivery: SqliteDelivery, delay: float) -> None:
        part = delivery._part
        part.inflight.pop(delivery.offset, None)
        due = time.time() + delay
        heapq.heappush(part.pending, (due, delivery.offset))
        part.retry_rows.add(delivery.offset)
        self._retries_set.append(
            (part.topic_id, part.index, part.epoch, delivery.offset, due, delivery.attempt)
        )
        self._dirty.add(part)
        self._schedule_flush()
        self.wake(due)

    def _take_dirty(self) -> list[_Partition]:
        dirty = list(self._dirty)
        self._dirty.clear()
        return dirty

    def _take_retries(
        self,
    ) -> tuple[list[tuple[int, int, int, int, float, int]], list[tuple[int, int, int, int]]]:
        retries_set, self._retries_set = self._retries_set, []
        retries_clear, self._retries_clear = self._retries_clear, []
        return retries_set, retries_clear

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(_FLUSH_DELAY, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        if self._flushing is not None and not self._flushing.done():
            self._schedule_flush()
            return
        self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Write acked positions and retry schedules now."""
        updates = [part.update() for part in self._take_dirty()]
        retries_set, retries_clear = self._take_retries()
        if not (updates or retries_set or retries_clear):
            return
        group, member = self.group, self.member_id
        try:
            await self.broker.writer.submit(
                lambda conn: _ops.flush(conn, group, member, updates, retries_set, retries_clear)
            )
        except Exception:
            log.exception("writing progress of group %s failed; events may be redelivered", group)

    async def commit(
        self,
        delivery: SqliteDelivery,
        outputs: Sequence[tuple[int, int, Sequence[Any]]],
        dedup_key: str | None,
    ) -> tuple[str, dict[int, dict[int, int]]]:
        """Exactly-once commit of one handling (see :class:`_ops.HandlingCommit`)."""
        part = delivery._part
        update = _ops.OffsetUpdate(
            part.topic_id,
            part.index,
            delivery._epoch,
            part.committed_if_settled(delivery.offset),
            part.delivered,
        )
        group, member = self.group, self.member_id
        rotation = self.broker.next_rotation(sum(len(m) for _, _, m in outputs))
        now = time.time()
        had_retry = delivery.offset in part.retry_rows
        result: tuple[str, dict[int, dict[int, int]]] = await self.broker.writer.submit(
            _ops.HandlingCommit(
                group,
                member,
                update,
                delivery.offset,
                had_retry,
                dedup_key,
                outputs,
                now,
                rotation,
            )
        )
        outcome = result[0]
        if outcome != "fenced" and not delivery.settled:
            delivery.settled = True
            if not delivery.fenced():
                part.settle(delivery.offset)
                part.retry_rows.discard(delivery.offset)
                if part.committed > update.committed:
                    # Handlings that finished meanwhile moved the position further than
                    # this transaction could know: write it later, like an ack.
                    self._dirty.add(part)
                    self._schedule_flush()
        return result

    async def close(self) -> None:
        """Leave the group: write progress, free partitions (unsettled ones are redelivered)."""
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        for handle in (self._timer, self._flush_handle):
            if handle is not None:
                handle.cancel()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        pending = [f for f in (self._flushing, self._poked) if f is not None]
        if pending:
            await asyncio.wait(pending)
        updates = [part.update() for part in self.owned.values()]
        retries_set, retries_clear = self._take_retries()
        group, member = self.group, self.member_id
        for part in self.owned.values():
            for delivery in part.inflight.values():
                delivery.settled = True

        def operation(conn: Any) -> None:
            _ops.flush(conn, group, member, (), retries_set, retries_clear)
            _ops.leave(conn, group, member, updates)

        try:
            await self.broker.writer.submit(operation)
        except Exception:
            log.exception("leaving group %s cleanly failed; its leases will expire", group)
        self.owned.clear()
        self.broker._forget(self)
