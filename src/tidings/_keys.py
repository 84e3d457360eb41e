"""The key sequencer: at most one event per key in flight, later ones in order behind it.

Pure bookkeeping, no I/O: the consumer asks it whether an item may run now
(``admit``), tells it when an item finished (``finish``) or will come back for
a retry (``finish(retry_id=...)``), and which deliveries it lost to a
rebalance (``revoke``). Under ``ordering="key"`` this is what keeps SEMANTICS.md's
promise that a retry holds back only later events of its own key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["KeySequencer"]

T = TypeVar("T")


class _Lane(Generic[T]):
    """A busy key: what waits behind its running event, and the retry it waits for."""

    __slots__ = ("retry_id", "waiting")

    def __init__(self) -> None:
        #: Items waiting, in order (made on the first one: most lanes never queue).
        self.waiting: deque[T] | None = None
        #: The delivery id of the lane's event that is away for a retry, if any.
        self.retry_id: str | None = None


class KeySequencer(Generic[T]):
    """Lanes of busy keys. An item of a free key runs at once; others queue in its lane."""

    __slots__ = ("_identify", "_lanes")

    def __init__(self, identify: Callable[[T], str]) -> None:
        #: The delivery id of an item (asked only while its key is away for a retry).
        self._identify = identify
        self._lanes: dict[Hashable, _Lane[T]] = {}

    def __len__(self) -> int:
        """Busy keys."""
        return len(self._lanes)

    def admit(self, key: Hashable, item: T) -> bool:
        """True if ``item`` may run now; otherwise it waits in its key's lane.

        While the key is away for a retry, the redelivery of the retried event
        is the one item that goes first.
        """
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = _Lane()
            return True
        if lane.retry_id is not None and lane.retry_id == self._identify(item):
            lane.retry_id = None
            return True
        if lane.waiting is None:
            lane.waiting = deque()
        lane.waiting.append(item)
        return False

    def behind_retries(self) -> tuple[list[str], int]:
        """(delivery ids of the events away for a retry, items waiting behind them)."""
        away: list[str] = []
        blocked = 0
        for lane in self._lanes.values():
            if lane.retry_id is not None:
                away.append(lane.retry_id)
                blocked += len(lane.waiting) if lane.waiting else 0
        return away, blocked

    def waiting(self) -> list[T]:
        """Every item waiting behind its key (none of them has started)."""
        return [item for lane in self._lanes.values() if lane.waiting for item in lane.waiting]

    def finish(self, key: Hashable, retry_id: str | None = None) -> T | None:
        """The running item of ``key`` is done; return the next one to run, if any.

        With ``retry_id``, the item failed and will be redelivered: the key stays
        busy (its later items keep waiting) until that delivery is admitted.
        """
        lane = self._lanes.get(key)
        if lane is None:
            return None
        if retry_id is not None:
            lane.retry_id = retry_id
            return None
        if lane.waiting:
            return lane.waiting.popleft()
        del self._lanes[key]
        return None

    def revoke(
        self, lost: Callable[[T], bool], lost_id: Callable[[str], bool]
    ) -> tuple[list[T], list[T]]:
        """Forget what this member lost to a rebalance or an expired lease.

        Drops waiting items that are ``lost``, and a retry whose delivery id is
        ``lost_id`` (it will be redelivered to another member). Returns the
        dropped items and the items that may run now: the head of a lane whose
        retry was lost, since nothing of that key runs any more. The item
        running in a lane, if any, finishes normally.
        """
        dropped: list[T] = []
        runnable: list[T] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            if lane.waiting and any(lost(item) for item in lane.waiting):
                dropped.extend(item for item in lane.waiting if lost(item))
                lane.waiting = deque(item for item in lane.waiting if not lost(item))
            if lane.retry_id is not None and lost_id(lane.retry_id):
                lane.retry_id = None
                if lane.waiting:
                    runnable.append(lane.waiting.popleft())
                else:
                    del self._lanes[key]
        return dropped, runnable
