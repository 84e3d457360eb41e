"""A consumer-group member on the embedded broker: partitions, fetching, settlement.

Acks are recorded in memory at once and written in the background (a crash
before the write means redelivery, which at-least-once allows); the
position only moves past an offset once every earlier one is settled. The
member heartbeats through the writer, which also rebalances the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tidings.broker import Delivery, RevokeHandler
from tidings.brokers._member_id import member_id
from tidings.brokers._timer import WakeTimer
from tidings.brokers._waiting import wait_until
from tidings.brokers.sqlite import _ops
from tidings.brokers.sqlite._commit import HandlingCommit
from tidings.brokers.sqlite._delivery import SqliteDelivery
from tidings.brokers.sqlite._partition import Partition
from tidings.errors import ConfigurationError, StorageError

if TYPE_CHECKING:
    from tidings.brokers.sqlite import SqliteBroker

__all__ = ["SqliteSubscription"]

log = logging.getLogger("tidings.sqlite")
_FLUSH_DELAY = 0.02
#: Most rows read from one partition per fetch. The reader must get exactly what
#: is planned: fewer rows than asked for means the rest were removed (retention).
_READ_LIMIT = 1000

#: A planned read of one partition: (partition, due offsets, how many new rows).
_Plan = list[tuple[Partition, list[int], int]]


class SqliteSubscription:
    """One member of a consumer group, or a group-less reader (``subscribe`` returns it).

    A group-less reader is the only member of a group of its own, named
    ``~reader-<member id>``: it starts at the end of each partition, takes no
    partitions from any real group, and its rows are deleted when it closes
    (or, if its process died, by the next retention pass once its session
    expired).
    """

    def __init__(
        self,
        broker: SqliteBroker,
        group: str | None,
        topics: Sequence[tuple[str, int, int]],
        start_latest: bool,
        on_revoke: RevokeHandler | None = None,
        client_name: str | None = None,
    ) -> None:
        if group is not None and group.startswith(_ops.READER_PREFIX):
            raise ConfigurationError(
                f"group names starting with {_ops.READER_PREFIX!r} are reserved for "
                "group-less readers; pick another name, or pass group=None"
            )
        self.broker = broker
        self.member_id = member_id(client_name)
        self.ephemeral = group is None
        self.group = _ops.READER_PREFIX + self.member_id if group is None else group
        self.topics = {topic_id: name for name, topic_id, _ in topics}
        self._topic_partitions = [(topic_id, n) for _, topic_id, n in topics]
        self._start_latest = start_latest or group is None
        self._on_revoke = on_revoke
        self.owned: dict[tuple[int, int], Partition] = {}
        self.closed = False
        self._timer = WakeTimer()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._retries_set: list[tuple[int, int, int, int, float, int]] = []
        self._retries_clear: list[tuple[int, int, int, int]] = []
        self._dirty: set[Partition] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._waiting = False
        self._poked: asyncio.Future[None] | None = None
        self._beating = asyncio.Lock()
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
            await asyncio.sleep(0.05 if self._waiting else self.broker.config.heartbeat)
            try:
                await self.heartbeat()
            except StorageError:
                self.wake()  # a waiting fetch raises it
                return
            except Exception:  # keep trying: a missed heartbeat only risks the lease
                log.exception("heartbeat of group %s failed", self.group)

    async def heartbeat(self) -> None:
        """Renew leases, rebalance, and pick up partitions newly held (or reset by a seek).

        A partition the group now wants elsewhere is let go of in two steps:
        this heartbeat revokes its deliveries here (``on_revoke``) while the
        lease still keeps the new owner out; the next one, at once, releases it.
        """
        async with self._beating:  # one at a time: each must see what the last one held
            if await self._beat() and not self.closed:
                await self._beat()

    async def _beat(self) -> bool:
        """One heartbeat; True if partitions were revoked that the next one releases."""
        if self.closed:
            return False
        known = {key: part.epoch for key, part in self.owned.items()}
        dirty = self._take_dirty()
        updates = [part.update() for part in dirty]
        retries_set, retries_clear = self._take_retries()
        group, member, topics = self.group, self.member_id, self._topic_partitions
        start_latest, timeout = self._start_latest, self.broker.config.session_timeout

        def operation(conn: Any) -> _ops.Rebalanced:
            _ops.flush(conn, group, member, updates, retries_set, retries_clear)
            return _ops.rebalance(
                conn, group, member, topics, known, start_latest, timeout, time.time()
            )

        try:
            result: _ops.Rebalanced = await self.broker.writer.submit(operation)
        except BaseException:
            self._restore(dirty, retries_set, retries_clear)
            raise
        self.members_seen = result.members
        self._waiting = result.waiting
        if self.closed:
            return False
        lost: list[SqliteDelivery] = []
        for key in list(self.owned):
            if key not in result.held:
                lost.extend(self._lose(key))
        for state in result.acquired:
            key = (state.topic_id, state.partition)
            held = self.owned.get(key)
            if held is not None and held.epoch == state.epoch:
                continue  # the same lease, already held: nothing to redo
            if held is not None:  # a seek moved it: what was in flight is void
                lost.extend(self._lose(key))
            self.owned[key] = Partition(self.topics[state.topic_id], state)
        if lost:
            self._revoke(lost)
        if result.acquired:
            self.wake()
        return result.releasing

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

    def _lose(self, key: tuple[int, int]) -> list[SqliteDelivery]:
        """Stop holding a partition; return what the consumer must forget.

        That is its unsettled deliveries, now fenced, and those nacked here
        that were not handed out again: their redelivery goes to the next owner.
        """
        part = self.owned.pop(key)
        # Its progress (and how far it was delivered, for attempt counts) goes out with
        # the next heartbeat: written if the lease is still ours, fenced otherwise.
        self._dirty.add(part)
        lost = [d for d in part.inflight.values() if not d.settled]
        for delivery in lost:
            delivery.settled = True
        lost.extend(part.nacked.values())
        part.inflight.clear()
        part.nacked.clear()
        return lost

    def _revoke(self, lost: list[SqliteDelivery]) -> None:
        if self._on_revoke is None:
            return
        try:
            self._on_revoke(lost)
        except Exception:  # the member must go on heartbeating whatever the callback does
            log.exception("on_revoke of group %s failed", self.group)

    # -- fetching ----------------------------------------------------------------

    def wake(self, due: float | None = None) -> None:
        """Make a waiting ``fetch`` look again: now, or at Unix time ``due``."""
        self._timer.wake(due)

    def _plan(self, max_count: int, now: float) -> tuple[_Plan, float | None]:
        """Which offsets to read: due retries and new messages per partition."""
        plan = []
        budget = max_count
        next_due: float | None = None
        heads = self.broker.heads
        for part in self.owned.values():
            if budget <= 0:
                break
            due = part.pending.pop_due(now, budget)
            first = part.pending.next_due()
            if first is not None:
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
        event = self._timer.event
        while not self.closed:
            lost = self.broker.writer.lost
            if lost is not None:  # the file was deleted or replaced: stop, loudly
                raise lost
            event.clear()
            now = time.time()
            plan, next_due = self._plan(max_count, now)
            if plan:
                out = await self._read(plan, now)
                if out:
                    return out
                continue
            if next_due is not None:
                self.wake(next_due)
            if not await wait_until(event, deadline):
                return []
        return []

    async def _read(self, plan: _Plan, now: float) -> list[Delivery]:
        requests = [
            (part.topic_id, part.index, due, part.cursor, fresh) for part, due, fresh in plan
        ]
        results = await self.broker.reader.messages(requests)
        out: list[Delivery] = []
        gone: list[SqliteDelivery] = []
        for (part, due, fresh), (due_rows, fresh_rows) in zip(plan, results, strict=True):
            if self.closed or self.owned.get((part.topic_id, part.index)) is not part:
                continue
            end = part.cursor + fresh
            found = set()
            for row in due_rows:
                found.add(row[0])
                if row[0] not in part.inflight:
                    out.append(self._deliver(part, row))
            for offset in due:
                if offset not in found:  # removed by retention or compaction meanwhile
                    waited_for = part.nacked.get(offset)
                    if waited_for is not None:
                        gone.append(waited_for)
                    part.remove(offset)
                    self._forget_retry(part, offset)
            self._take_fresh(part, fresh_rows, now, out)
            if len(fresh_rows) < fresh and part.cursor < end:
                # Fewer rows than the head promised: the rest were removed by retention.
                part.skip(part.cursor, end)
                part.cursor = end
        if gone:
            # The consumer waits for these to come back (holding their keys): they never will.
            self._revoke(gone)
        if out and not self.ephemeral:
            await self._record_handout(plan)
            if self.closed:
                return []
            # A rebalance during the write may have taken some back (revoked, settled).
            out = [d for d in out if not d.settled]
        return out

    async def _record_handout(self, plan: _Plan) -> None:
        """Write how far each partition was handed out before anyone handles it.

        After a crash, whatever was handed out comes back as attempt 2 or more
        (the process cannot tell which of its prefetched events had started).
        One small transaction per fetch, group-committed with the other writes.
        """
        updates = [part.update() for part, _, _ in plan if part.delivered > part.durable_delivered]
        if not updates:
            return
        group, member = self.group, self.member_id
        await self.broker.writer.submit(
            lambda conn: _ops.flush(conn, group, member, updates, (), ())
        )
        for part, _, _ in plan:
            if part.delivered > part.durable_delivered:
                part.durable_delivered = part.delivered

    def record_start(self, delivery: SqliteDelivery) -> asyncio.Future[None]:
        """A redelivery is about to be handled: write its attempt first.

        Then a handler that kills its process still counts, and an event that
        does so every time reaches ``max_attempts``. (First deliveries need no
        write: the handed-out mark, written at fetch, covers them.)
        """
        part, offset = delivery._part, delivery.offset
        part.retry_rows.add(offset)
        row = (part.topic_id, part.index, part.epoch, offset, time.time(), delivery.attempt)
        group, member = self.group, self.member_id
        return self.broker.writer.submit(
            lambda conn: _ops.flush(conn, group, member, (), (row,), ())
        )

    def _take_fresh(
        self, part: Partition, rows: Sequence[Any], now: float, out: list[Delivery]
    ) -> None:
        """New rows: hand them out, or set them aside until their time or their key's turn."""
        for row in rows:
            offset = int(row[0])
            if offset < part.cursor:
                continue
            if offset > part.cursor:
                part.skip(part.cursor, offset)
            part.cursor = offset + 1
            if (
                offset in part.retry_rows
                or offset in part.watermark.ahead
                or offset < part.watermark.committed  # a due retry settled before the cursor
            ):
                continue
            deliver_at = row[5]
            wait = float(deliver_at) if deliver_at is not None and deliver_at > now else None
            if part.pending.barriers:
                barrier = part.pending.barrier(row[1], offset)
                if barrier is not None:
                    # An inherited retry of this key waits: this one goes right after it.
                    wait = barrier if wait is None else max(wait, barrier)
            if wait is not None:
                part.pending.push(wait, offset)
                self.wake(wait)
                continue
            out.append(self._deliver(part, row))

    def _deliver(self, part: Partition, row: Sequence[Any]) -> SqliteDelivery:
        offset = int(row[0])
        previous = part.attempts.get(offset)
        if previous is None:
            previous = 1 if offset <= part.prior_delivered else 0
        delivery = SqliteDelivery(self, part, row, previous + 1)
        part.attempts[offset] = previous + 1
        part.inflight[offset] = delivery
        if part.nacked or part.barrier_keys:  # Partition.hand_out, only when it has work
            part.hand_out(delivery.key, offset)
        if offset > part.delivered:
            part.delivered = offset
        return delivery

    # -- settlement ------------------------------------------------------------------

    def record_ack(self, delivery: SqliteDelivery) -> None:
        """An unfenced ack: settle in memory now, write the position soon."""
        part, offset = delivery._part, delivery.offset
        # Partition.settle, inlined: this runs once per event.
        part.inflight.pop(offset, None)
        part.attempts.pop(offset, None)
        part.watermark.settle(offset)
        if offset in part.retry_rows:
            self._forget_retry(part, offset)
        self._dirty.add(part)
        self._schedule_flush()

    def release(self, delivery: SqliteDelivery) -> None:
        """An unfenced release: hand it out again later with the same attempt."""
        part, offset = delivery._part, delivery.offset
        part.inflight.pop(offset, None)
        now = time.time()
        part.attempts[offset] = delivery.attempt - 1
        part.pending.push(now, offset)
        part.retry_rows.add(offset)
        self._retries_set.append(
            (part.topic_id, part.index, part.epoch, offset, now, delivery.attempt - 1)
        )
        self._schedule_flush()

    def _forget_retry(self, part: Partition, offset: int) -> None:
        if offset in part.retry_rows:
            part.retry_rows.discard(offset)
            self._retries_clear.append((part.topic_id, part.index, part.epoch, offset))

    def schedule_redelivery(self, delivery: SqliteDelivery, delay: float) -> None:
        """An unfenced nack: redeliver after ``delay``, a schedule written to ``retries``."""
        part = delivery._part
        part.inflight.pop(delivery.offset, None)
        part.nacked[delivery.offset] = delivery
        due = time.time() + delay
        part.pending.push(due, delivery.offset)
        part.retry_rows.add(delivery.offset)
        self._retries_set.append(
            (part.topic_id, part.index, part.epoch, delivery.offset, due, delivery.attempt)
        )
        self._dirty.add(part)
        self._schedule_flush()
        self.wake(due)

    def _take_dirty(self) -> list[Partition]:
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
        """Write acked positions and retry schedules now.

        If the write fails (disk full, a lock held too long), what it carried is
        kept for the next flush or heartbeat: a position is never dropped.
        """
        dirty = self._take_dirty()
        updates = [part.update() for part in dirty]
        retries_set, retries_clear = self._take_retries()
        if not (updates or retries_set or retries_clear):
            return
        group, member = self.group, self.member_id
        try:
            await self.broker.writer.submit(
                lambda conn: _ops.flush(conn, group, member, updates, retries_set, retries_clear)
            )
        except BaseException as exc:
            self._restore(dirty, retries_set, retries_clear)
            if not isinstance(exc, Exception):
                raise
            log.warning("writing progress of group %s failed (%s); will retry", group, exc)

    def _restore(
        self,
        dirty: list[Partition],
        retries_set: list[tuple[int, int, int, int, float, int]],
        retries_clear: list[tuple[int, int, int, int]],
    ) -> None:
        """Put back what a failed write carried, ahead of anything newer."""
        self._dirty.update(dirty)
        self._retries_set[:0] = retries_set
        self._retries_clear[:0] = retries_clear

    async def commit(
        self,
        delivery: SqliteDelivery,
        outputs: Sequence[tuple[int, int, Sequence[Any]]],
        dedup_key: str | None,
    ) -> tuple[str, dict[int, dict[int, int]]]:
        """Exactly-once commit of one handling (see :class:`HandlingCommit`)."""
        part = delivery._part
        update = _ops.OffsetUpdate(
            part.topic_id,
            part.index,
            delivery._epoch,
            part.watermark.committed_if_settled(delivery.offset),
            part.delivered,
        )
        group, member = self.group, self.member_id
        rotation = self.broker.next_rotation(sum(len(m) for _, _, m in outputs))
        now = time.time()
        had_retry = delivery.offset in part.retry_rows
        result: tuple[str, dict[int, dict[int, int]]] = await self.broker.writer.submit(
            HandlingCommit(
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
                if part.watermark.committed > update.committed:
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
        self._timer.cancel()
        self._timer.event.set()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        pending = [f for f in (self._flushing, self._poked) if f is not None]
        if pending:
            await asyncio.wait(pending)
        updates = [part.update() for part in {*self.owned.values(), *self._take_dirty()}]
        retries_set, retries_clear = self._take_retries()
        group, member, ephemeral = self.group, self.member_id, self.ephemeral
        for part in self.owned.values():
            for delivery in part.inflight.values():
                delivery.settled = True

        def operation(conn: Any) -> None:
            _ops.flush(conn, group, member, (), retries_set, retries_clear)
            _ops.leave(conn, group, member, updates)
            if ephemeral:
                _ops.drop_group(conn, group)

        try:
            await self.broker.writer.submit(operation)
        except Exception:
            log.exception("leaving group %s cleanly failed; its leases will expire", group)
        self.owned.clear()
        self.broker.forget(self)
