"""A consumer group on one memory topic: its members, deliveries and positions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.broker import Delivery, RevokeHandler, StartFrom
from tidings.brokers._pending import PendingQueue
from tidings.brokers._settle import OffsetDelivery
from tidings.brokers._timer import WakeTimer
from tidings.brokers._waiting import wait_until
from tidings.brokers._watermark import Watermark
from tidings.errors import ConfigurationError

if TYPE_CHECKING:
    from tidings.brokers.memory._hub import MemoryHub, Record, Topic

__all__ = ["GroupTopic", "MemoryDelivery", "MemorySubscription"]


class GroupTopic:
    """The state of one consumer group on one topic."""

    __slots__ = (
        "attempts",
        "cursor",
        "ephemeral",
        "inflight",
        "marks",
        "members",
        "nacked",
        "owner",
        "pending",
        "topic",
    )

    def __init__(self, topic: Topic, start: StartFrom, ephemeral: bool = False) -> None:
        self.topic = topic
        self.ephemeral = ephemeral
        n = len(topic.partitions)
        ends = [len(p) for p in topic.partitions] if start == "latest" else [0] * n
        self.cursor = list(ends)
        self.marks = [Watermark(end) for end in ends]
        self.pending = [PendingQueue() for _ in range(n)]
        self.inflight: list[dict[int, MemoryDelivery]] = [{} for _ in range(n)]
        #: Nacked deliveries waiting to come back: their member still waits for them.
        self.nacked: list[dict[int, MemoryDelivery]] = [{} for _ in range(n)]
        self.attempts: list[dict[int, int]] = [{} for _ in range(n)]
        self.members: list[MemorySubscription] = []
        self.owner: list[MemorySubscription | None] = [None] * n

    def rebalance(self) -> None:
        """Spread partitions over the members; a member losing one is told what it lost."""
        members = self.members
        for p in range(len(self.owner)):
            previous = self.owner[p]
            owner = members[p % len(members)] if members else None
            self.owner[p] = owner
            if previous is owner:
                continue
            if owner is not None:
                self.inherit(p)
            if previous is not None and not previous.closed:
                previous.revoked(self.requeue(p, previous))
        for member in members:
            member.wake()

    def requeue(self, p: int, member: MemorySubscription) -> list[MemoryDelivery]:
        """Take back ``member``'s unsettled deliveries of partition ``p``, in offset order.

        Each goes back before later messages of its key, behind earlier
        redeliveries of that key (a barrier), so the next owner keeps key order.
        Returns them, with the member's nacked ones still waiting to come back
        (the member waits for those too: they are lost to it as well).
        """
        nacked = self.nacked[p]
        waited = [d for d in nacked.values() if d.member is member]
        for delivery in waited:
            del nacked[delivery.offset]
        inflight = self.inflight[p]
        taken = sorted((d for d in inflight.values() if d.member is member), key=lambda d: d.offset)
        pending = self.pending[p]
        now = time.time()
        for delivery in taken:
            del inflight[delivery.offset]
            delivery.settled = True
            self.attempts[p][delivery.offset] = delivery.attempt
            due = max(now, pending.barrier(delivery.key, delivery.offset) or now)
            pending.push(due, delivery.offset)
            if delivery.key is not None:
                pending.add_barrier(delivery.key, due, delivery.offset)
        return waited + taken

    def inherit(self, p: int) -> None:
        """A partition changed hands: its waiting redeliveries hold back their keys."""
        pending, attempts = self.pending[p], self.attempts[p]
        records = self.topic.partitions[p]
        for due, offset in sorted(pending.entries(), key=lambda entry: entry[1]):
            key = records[offset].message.key
            if offset in attempts and key is not None:
                pending.add_barrier(key, due, offset)

    def settle(self, partition: int, offset: int) -> None:
        self.inflight[partition].pop(offset, None)
        nacked = self.nacked[partition]
        if nacked:
            nacked.pop(offset, None)
        self.attempts[partition].pop(offset, None)
        self.marks[partition].settle(offset)

    def backlog(self) -> int:
        """Messages not yet settled by this group (including delayed ones)."""
        total = 0
        for p, records in enumerate(self.topic.partitions):
            mark = self.marks[p]
            total += len(records) - mark.committed - len(mark)
        return total


class MemoryDelivery(OffsetDelivery):
    __slots__ = ("_state", "member")

    def __init__(
        self,
        member: MemorySubscription,
        state: GroupTopic,
        partition: int,
        record: Record,
        attempt: int,
    ) -> None:
        message = record.message
        self.member = member
        self._state = state
        self.topic = state.topic.name
        self.partition = partition
        self.offset = record.offset
        self.key = message.key
        self.value = message.value
        self.headers = message.headers
        self.group = member.group
        self.attempt = attempt
        self.published_at = record.published_at
        self.settled = False

    def fenced(self) -> bool:
        return (
            self.member.closed or self._state.inflight[self.partition].get(self.offset) is not self
        )

    def _on_ack(self) -> None:
        # GroupTopic.settle, inlined: this runs once per event.
        state, p, offset = self._state, self.partition, self.offset
        del state.inflight[p][offset]
        if state.nacked[p]:
            state.nacked[p].pop(offset, None)
        state.attempts[p].pop(offset, None)
        state.marks[p].settle(offset)

    def ack_now(self) -> None:
        if not self.settled:
            self.settled = True
            if not self.fenced():
                self._on_ack()

    def _on_nack(self, delay: float) -> None:
        state = self._state
        del state.inflight[self.partition][self.offset]
        state.nacked[self.partition][self.offset] = self
        state.attempts[self.partition][self.offset] = self.attempt
        if not self.member.scheduled:
            delay = 0.0
        due = time.time() + delay
        state.pending[self.partition].push(due, self.offset)
        owner = state.owner[self.partition]
        if owner is not None:
            owner.wake(due)

    def __repr__(self) -> str:
        return (
            f"<MemoryDelivery {self.topic}[{self.partition}]@{self.offset} "
            f"group={self.group} attempt={self.attempt}>"
        )


class MemorySubscription:
    def __init__(
        self,
        hub: MemoryHub,
        group: str,
        states: list[GroupTopic],
        on_revoke: RevokeHandler | None,
        scheduled: bool,
    ) -> None:
        self.hub = hub
        self.group = group
        self.member_id = f"memory-{uuid.uuid4().hex[:12]}"
        self.states = states
        self.closed = False
        #: False on a ``delay=none`` broker: deliver_at and nack delays are ignored.
        self.scheduled = scheduled
        self._on_revoke = on_revoke
        self._timer = WakeTimer()
        #: Wake the fetch loop now, or at a Unix time (bound once: called per publish).
        self.wake = self._timer.wake
        self._rotation = 0

    def revoked(self, deliveries: list[MemoryDelivery]) -> None:
        if deliveries and self._on_revoke is not None:
            self._on_revoke(deliveries)

    def _collect(self, max_count: int) -> tuple[list[MemoryDelivery], float | None]:
        out: list[MemoryDelivery] = []
        now = time.time()
        next_due: float | None = None
        owned = [
            (state, p)
            for state in self.states
            for p, owner in enumerate(state.owner)
            if owner is self
        ]
        if not owned:
            return out, None
        self._rotation = (self._rotation + 1) % len(owned)
        owned = owned[self._rotation :] + owned[: self._rotation]
        for state, p in owned:
            pending = state.pending[p]
            records = state.topic.partitions[p]
            removed = state.topic.removed[p]
            if pending.heap:
                for offset in pending.pop_due(now, max_count - len(out)):
                    record = records[offset]
                    pending.delivered(record.message.key, offset)
                    if offset in removed:
                        state.settle(p, offset)
                        continue
                    out.append(self._deliver(state, p, record))
                due = pending.next_due()
                if due is not None:
                    next_due = due if next_due is None else min(next_due, due)
            cursor = state.cursor[p]
            end = len(records)
            while cursor < end and len(out) < max_count:
                record = records[cursor]
                cursor += 1
                if removed and record.offset in removed:
                    state.marks[p].settle(record.offset)
                    continue
                deliver_at = record.message.deliver_at if self.scheduled else None
                if pending.heap:
                    barrier = pending.barrier(record.message.key, record.offset)
                    if barrier is not None:
                        deliver_at = barrier if deliver_at is None else max(deliver_at, barrier)
                if deliver_at is not None and deliver_at > now:
                    pending.push(deliver_at, record.offset)
                    next_due = deliver_at if next_due is None else min(next_due, deliver_at)
                    continue
                out.append(self._deliver(state, p, record))
            state.cursor[p] = cursor
            if len(out) >= max_count:
                break
        return out, next_due

    def _deliver(self, state: GroupTopic, p: int, record: Record) -> MemoryDelivery:
        # Only redelivered offsets have a count stored (by nack or by a member leaving).
        attempt = state.attempts[p].get(record.offset, 0) + 1
        delivery = MemoryDelivery(self, state, p, record, attempt)
        state.inflight[p][record.offset] = delivery
        if state.nacked[p]:
            state.nacked[p].pop(record.offset, None)
        return delivery

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        if max_count < 1:
            raise ConfigurationError("fetch max_count must be >= 1")
        deadline = time.monotonic() + timeout
        event = self._timer.event
        while not self.closed:
            event.clear()
            out, next_due = self._collect(max_count)
            if out:
                return out
            if next_due is not None:
                self.wake(next_due)
            if not await wait_until(event, deadline):
                return []
        return []

    async def close(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        """Leave the group at once: unsettled deliveries go back for redelivery."""
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        self._timer.event.set()
        for state in self.states:
            for p, owner in enumerate(state.owner):
                if owner is self:
                    state.inherit(p)
                state.requeue(p, self)
            state.members.remove(self)
            if state.ephemeral:
                self.hub.forget(self.group, state)
            else:
                state.rebalance()
        self.hub._subscriptions.discard(self)
