"""The contiguous-offset watermark of one partition.

Deliveries of a partition settle out of order (concurrent handlers, retries);
the committed position may only move past an offset once every earlier one is
settled. Offsets removed by retention or compaction count as settled.
"""

from __future__ import annotations

__all__ = ["Watermark"]


class Watermark:
    """``committed`` is the first offset not yet known to be settled."""

    __slots__ = ("_gaps", "ahead", "committed")

    def __init__(self, committed: int = 0) -> None:
        self.committed = committed
        #: Offsets settled beyond ``committed`` (read it for a cheap membership test).
        self.ahead: set[int] = set()
        self._gaps: dict[int, int] = {}

    def reset(self, committed: int) -> None:
        """Start again at ``committed`` (a seek), forgetting what was settled."""
        self.committed = committed
        self.ahead.clear()
        self._gaps.clear()

    def restore(self, ahead: set[int]) -> None:
        """Offsets stored as settled beyond ``committed`` (after a restart).

        The stored position may already be one of them: an exactly-once commit
        writes the position it computed, and a crash may come before the write
        that would have moved it past offsets settled meanwhile. Move over them
        now, or the first would be skipped as settled and the position never pass it.
        """
        self.ahead.update(ahead)
        if self.committed in self.ahead:
            self.committed = self._advance(self.committed, consume=True)

    def settle(self, offset: int) -> None:
        if offset == self.committed:
            if self.ahead or self._gaps:
                self.committed = self._advance(offset + 1, consume=True)
            else:  # the common case: in order, nothing settled ahead
                self.committed = offset + 1
        elif offset > self.committed:
            self.ahead.add(offset)

    def skip(self, start: int, end: int) -> None:
        """Offsets ``start`` to ``end`` (exclusive) no longer exist: treat them as settled."""
        if start == self.committed:
            self.committed = self._advance(end, consume=True)
        elif start > self.committed:
            self._gaps[start] = end

    def committed_if_settled(self, offset: int) -> int:
        """What ``committed`` would become if ``offset`` were settled now."""
        if offset != self.committed:
            return self.committed
        return self._advance(offset + 1, consume=False)

    def _advance(self, committed: int, consume: bool) -> int:
        done, gaps = self.ahead, self._gaps
        while True:
            if committed in done:
                if consume:
                    done.discard(committed)
                committed += 1
            elif committed in gaps:
                committed = gaps.pop(committed) if consume else gaps[committed]
            else:
                return committed

    def __len__(self) -> int:
        """Offsets settled beyond ``committed`` (not counting gaps)."""
        return len(self.ahead)
