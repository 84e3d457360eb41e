"""Lifecycle hooks of handling, for tracing, metrics and logs without touching internals.

Subclass :class:`Observer`, override what you need, and register it with
:meth:`tidings.App.add_observer` before start::

    class Counting(Observer):
        def __init__(self) -> None:
            self.handled = 0

        def handled(self, subscription: str, delivery: Delivery, event: Event,
                    seconds: float) -> None:
            self.handled += 1

Hooks run on the event loop, inline: they must be quick and must not block.
An exception raised by a hook is logged and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from tidings.broker import Delivery
from tidings.event import Event

__all__ = ["Observer", "Observers"]

log = logging.getLogger("tidings.hooks")


class Observer:
    """Called as deliveries move through a subscription. Every hook does nothing by default."""

    def received(self, subscription: str, delivery: Delivery) -> None:
        """A delivery was taken from the broker (before decoding)."""

    def handled(self, subscription: str, delivery: Delivery, event: Event, seconds: float) -> None:
        """The handler returned and the follow-ups were published (or queued for commit)."""

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        """The attempt failed and the event will be delivered again after ``delay`` seconds."""

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        """The event was stored in the dead-letter ``topic`` and acked."""

    def committed(self, subscription: str, delivery: Delivery, outputs: int) -> None:
        """An exactly-once handling committed with ``outputs`` follow-up messages."""


class Observers:
    """The registered observers, called in order, each one's failure contained."""

    __slots__ = ("_hooks", "_observers")

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self._observers = tuple(observers)
        # Per hook, only the observers that override it: a hook nobody overrides
        # costs nothing per event (tracing, say, wants retries, not every receipt).
        self._hooks: dict[str, tuple[tuple[Observer, Callable[..., None]], ...]] = {
            name: tuple(
                (o, getattr(o, name))
                for o in self._observers
                if getattr(type(o), name, None) is not getattr(Observer, name)
            )
            for name in _HOOKS
        }

    def __bool__(self) -> bool:
        return bool(self._observers)

    def overrides(self, hook: str) -> bool:
        """Whether an observer does something on ``hook``."""
        return bool(self._hooks[hook])

    def _each(self, hook: str, *args: object) -> None:
        for observer, method in self._hooks[hook]:
            try:
                method(*args)
            except Exception:
                log.exception("observer %r failed in %s", observer, hook)

    def received(self, subscription: str, delivery: Delivery) -> None:
        self._each("received", subscription, delivery)

    def handled(self, subscription: str, delivery: Delivery, event: Event, seconds: float) -> None:
        self._each("handled", subscription, delivery, event, seconds)

    def retried(
        self, subscription: str, delivery: Delivery, error: BaseException, delay: float
    ) -> None:
        self._each("retried", subscription, delivery, error, delay)

    def dead_lettered(
        self, subscription: str, delivery: Delivery, error: BaseException, topic: str
    ) -> None:
        self._each("dead_lettered", subscription, delivery, error, topic)

    def committed(self, subscription: str, delivery: Delivery, outputs: int) -> None:
        self._each("committed", subscription, delivery, outputs)


_HOOKS = ("received", "handled", "retried", "dead_lettered", "committed")
