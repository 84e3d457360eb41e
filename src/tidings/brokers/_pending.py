"""Offsets of one partition waiting for their time: delayed messages and redeliveries.

Earliest due first; equal dues in offset order. A *barrier* keeps later
messages of a key behind a redelivery that a member inherited (a partition
moved while one of its messages waited for a retry): the new owner's consumer
never saw that message fail, so the broker itself must not let later messages
of its key overtake it.
"""

from __future__ import annotations

import heapq

__all__ = ["PendingQueue"]


class PendingQueue:
    __slots__ = ("barriers", "heap")

    def __init__(self) -> None:
        #: The ``(due, offset)`` heap (read it to test for emptiness cheaply).
        self.heap: list[tuple[float, int]] = []
        #: Key -> (due, offset) of the redelivery holding it (empty in the common case).
        self.barriers: dict[str, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, due: float, offset: int) -> None:
        heapq.heappush(self.heap, (due, offset))

    def entries(self) -> list[tuple[float, int]]:
        """Every waiting ``(due, offset)``, in no particular order."""
        return list(self.heap)

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now: float, limit: int) -> list[int]:
        """Offsets due at ``now``, at most ``limit``, in (due, offset) order."""
        heap = self.heap
        out: list[int] = []
        while heap and heap[0][0] <= now and len(out) < limit:
            out.append(heapq.heappop(heap)[1])
        return out

    def clear(self) -> None:
        self.heap.clear()
        self.barriers.clear()

    # -- barriers ------------------------------------------------------------------

    def add_barrier(self, key: str, due: float, offset: int) -> None:
        """Hold later messages of ``key`` until the redelivery at ``offset`` (due at ``due``)."""
        found = self.barriers.get(key)
        if found is not None:
            due, offset = max(due, found[0]), max(offset, found[1])
        self.barriers[key] = (due, offset)

    def barrier(self, key: str | None, offset: int) -> float | None:
        """The time a message of ``key`` at ``offset`` must wait for, if it is behind one."""
        if key is None or not self.barriers:
            return None
        found = self.barriers.get(key)
        if found is None or found[1] >= offset:
            return None
        return found[0]

    def delivered(self, key: str | None, offset: int) -> None:
        """``offset`` was handed out: lift its key's barrier once the last held one went."""
        if key is None or not self.barriers:
            return
        found = self.barriers.get(key)
        if found is not None and found[1] <= offset:
            del self.barriers[key]
