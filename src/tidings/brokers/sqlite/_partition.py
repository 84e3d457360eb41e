"""What one member knows about one partition it holds: position, in-flight, waiting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.brokers._pending import PendingQueue
from tidings.brokers._watermark import Watermark
from tidings.brokers.sqlite import _ahead, _ops

if TYPE_CHECKING:
    from tidings.brokers.sqlite._delivery import SqliteDelivery

__all__ = ["Partition"]


class Partition:
    """A held partition, from the lease epoch that acquired it until it is lost."""

    __slots__ = (
        "ahead_stored",
        "attempts",
        "barrier_keys",
        "cursor",
        "delivered",
        "durable_delivered",
        "epoch",
        "index",
        "inflight",
        "nacked",
        "pending",
        "prior_delivered",
        "retry_rows",
        "topic",
        "topic_id",
        "watermark",
    )

    def __init__(self, topic: str, state: _ops.Acquired) -> None:
        self.topic = topic
        self.topic_id = state.topic_id
        self.index = state.partition
        self.epoch = state.epoch
        self.watermark = Watermark(state.committed)
        self.watermark.restore(state.ahead)  # acked before a restart: skipped
        #: Whether ``settled_ahead`` may hold offsets for this partition.
        self.ahead_stored = bool(state.ahead)
        #: The next offset to read as new (retries and delayed ones wait in ``pending``).
        self.cursor = self.watermark.committed
        self.delivered = state.delivered
        #: How far handing out is known to be written (attempt counts survive a crash).
        self.durable_delivered = state.delivered
        self.prior_delivered = state.delivered
        self.inflight: dict[int, SqliteDelivery] = {}
        #: Deliveries nacked here and not handed out again yet: the consumer waits for them.
        self.nacked: dict[int, SqliteDelivery] = {}
        self.pending = PendingQueue()
        self.attempts: dict[int, int] = {}
        #: Offsets with a row in the ``retries`` table (written or about to be).
        self.retry_rows: set[int] = set()
        #: Inherited retries holding their key's later messages back: offset -> key.
        self.barrier_keys: dict[int, str] = {}
        latest: dict[str, float] = {}
        for offset, stored_due, attempts, key in sorted(state.retries):
            due = stored_due
            if key is not None:
                # Never before an earlier event of its key (rows of one key may carry
                # any due times: a nack's, a release's, a started handling's).
                due = max(due, latest.get(key, due))
                latest[key] = due
            self.pending.push(due, offset)
            self.attempts[offset] = attempts
            self.retry_rows.add(offset)
            if key is not None:
                # Whoever nacked it was another member (or an earlier life of this
                # process): the consumer here never saw it fail, so the broker keeps
                # later messages of its key behind it.
                self.pending.add_barrier(key, due, offset)
                self.barrier_keys[offset] = key

    @property
    def committed(self) -> int:
        """The first offset not yet known to be settled: the group's position."""
        return self.watermark.committed

    def hand_out(self, key: str | None, offset: int) -> None:
        """``offset`` goes to the consumer now: it may lift its key's barrier."""
        self.nacked.pop(offset, None)
        self.pending.delivered(key, offset)
        self.barrier_keys.pop(offset, None)

    def settle(self, offset: int) -> None:
        self.inflight.pop(offset, None)
        self.attempts.pop(offset, None)
        self.watermark.settle(offset)

    def remove(self, offset: int) -> None:
        """A waiting ``offset`` was removed by retention: settled, and no longer a barrier."""
        self.settle(offset)
        self.nacked.pop(offset, None)
        key = self.barrier_keys.pop(offset, None)
        if key is not None:
            self.pending.delivered(key, offset)

    def skip(self, start: int, end: int) -> None:
        """Offsets ``start`` to ``end`` (exclusive) no longer exist: treat them as settled."""
        self.watermark.skip(start, end)

    def update(self) -> _ops.OffsetUpdate:
        ahead = self.watermark.ahead
        blob: bytes | None = None
        if ahead and len(ahead) <= _ahead.MAX_KEPT:
            blob = _ahead.encode(ahead)
            self.ahead_stored = True
        elif self.ahead_stored and not ahead:
            blob = b""  # what was stored is behind the position now
            self.ahead_stored = False
        return _ops.OffsetUpdate(
            self.topic_id, self.index, self.epoch, self.watermark.committed, self.delivered, blob
        )
