"""Counts kept on the event loop as plain numbers, for a Prometheus scrape in another thread.

Adding to a Python int costs a fraction of a prometheus_client child's
``inc`` (each takes a lock), and this runs for every event. Only the event
loop writes; a scrape copies what it reads (copying a list or a dict's items
is atomic under the GIL), so it may miss the event being counted, never see a
broken number.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["DURATION_BUCKETS", "EventTally", "Tally"]

#: Upper bounds (seconds) of the handler duration buckets; +Inf follows.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EventTally:
    """The counts of one (topic, type, group)."""

    __slots__ = ("buckets", "dead_lettered", "failed", "handled", "retried", "seconds")

    def __init__(self) -> None:
        self.handled = 0
        self.failed = 0
        self.retried = 0
        self.dead_lettered = 0
        #: Handlings per duration bucket (not cumulative); the last is above every bound.
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus histogram buckets: (upper bound, handlings at or under it)."""
        counts = list(self.buckets)
        total = 0
        out = []
        for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out


class Tally:
    """Everything the metrics count, by label values."""

    __slots__ = ("events", "lag", "published", "running")

    def __init__(self) -> None:
        self.events: dict[tuple[str, str, str], EventTally] = {}
        self.published: dict[tuple[str, str], int] = {}
        #: Handler calls running now, per group.
        self.running: dict[str, int] = {}
        #: Lag per (group, topic, partition), replaced whole by each reading.
        self.lag: dict[tuple[str, str, str], int] = {}

    def event(self, key: tuple[str, str, str]) -> EventTally:
        tally = self.events.get(key)
        if tally is None:
            tally = self.events[key] = EventTally()
        return tally
