"""Flow control of one subscription: the deliveries it holds, and timers on them.

``Flow`` bounds what was taken from the broker and not yet settled
(prefetch) and knows each such delivery, so a revocation can free exactly the
slots of what was lost. ``Timers`` are callbacks due later for one delivery (a
retry waiting on a broker without delayed redelivery, an event published with
a delay that arrived early), cancelled when the delivery is lost or the
subscription stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from tidings.broker import Delivery

__all__ = ["Flow", "Timers"]


class Flow:
    __slots__ = ("limit", "slot", "unsettled")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unsettled: dict[Delivery, bool] = {}
        self.slot = asyncio.Event()

    @property
    def free(self) -> int:
        return self.limit - len(self.unsettled)

    def take(self, deliveries: Iterable[Delivery]) -> None:
        unsettled = self.unsettled
        for delivery in deliveries:
            unsettled[delivery] = True

    def release(self, delivery: Delivery) -> bool:
        """Free ``delivery``'s slot; False if it was not held (settled or lost before)."""
        if self.unsettled.pop(delivery, False):
            self.slot.set()
            return True
        return False

    def holds(self, delivery: Delivery) -> bool:
        return delivery in self.unsettled

    def clear(self) -> None:
        self.unsettled.clear()
        self.slot.set()


class Timers:
    __slots__ = ("handles",)

    def __init__(self) -> None:
        #: The pending timer of each delivery (read it for a cheap emptiness test).
        self.handles: dict[Delivery, asyncio.TimerHandle] = {}

    def __bool__(self) -> bool:
        return bool(self.handles)

    def start(self, delivery: Delivery, delay: float, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self.handles.pop(delivery, None)
            callback()

        self.cancel(delivery)
        self.handles[delivery] = asyncio.get_running_loop().call_later(delay, fire)

    def cancel(self, delivery: Delivery) -> bool:
        handle = self.handles.pop(delivery, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_all(self) -> None:
        for handle in self.handles.values():
            handle.cancel()
        self.handles.clear()
