"""A wake-up for a fetch loop: now, or at a wall-clock time (the earliest asked)."""

from __future__ import annotations

import asyncio
import time

__all__ = ["WakeTimer"]


class WakeTimer:
    """Owns an :class:`asyncio.Event` that ``wake`` sets now or schedules to set later."""

    __slots__ = ("_timer", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def wake(self, due: float | None = None) -> None:
        """Set the event now (``due`` None or past), or at Unix time ``due``."""
        if due is None or due <= time.time():
            self.event.set()
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + (due - time.time())
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.event.set()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
