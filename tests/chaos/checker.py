"""The checker: what a run's history says about the broker and the App (pure).

- lost: acknowledged publishes never handled (must be 0), and events stored
  in the input topic never handled (must be 0);
- duplicates: handlings beyond the first of each event (allowed, reported);
  under exactly-once, effects in the output topic beyond one per event
  (must be 0), and handled events without an effect (must be 0);
- order: per producer and key, the first handlings of events follow publish
  order (redeliveries of earlier events may interleave);
- lag: the group consumed everything (must be 0).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .history import Handling, History, Lag

__all__ = ["Verdict", "check", "order_violations"]


@dataclass(frozen=True)
class Verdict:
    acknowledged: int
    publish_failures: int
    stored: int
    handled: int
    """Distinct events handled."""
    handlings: int
    lost: list[str]
    """Acknowledged but never handled."""
    unhandled: list[str]
    """Stored in the input topic but never handled."""
    not_stored: list[str]
    """Acknowledged and not found in the input topic."""
    order_violations: list[str]
    lag: Lag
    rehandlings: dict[int, int]
    """Handlings of an event -> how many events were handled that often."""
    effects: int | None = None
    duplicate_effects: list[str] | None = None
    missing_effects: list[str] | None = None
    dead_lettered: list[str] = field(default_factory=list)
    """In the input topic's dead-letter queue (never a pass: the chaos handler never fails,
    so an event gets there only when its attempts ran out without a handling)."""

    @property
    def duplicates(self) -> int:
        return self.handlings - self.handled

    def problems(self) -> list[str]:
        found = []
        for name, items in (
            ("acknowledged events lost", self.lost),
            ("stored events never handled", self.unhandled),
            ("acknowledged events not stored", self.not_stored),
            ("events dead-lettered", self.dead_lettered),
            ("order violations", self.order_violations),
            ("duplicate effects", self.duplicate_effects or []),
            ("handled events without effect", self.missing_effects or []),
        ):
            if items:
                found.append(f"{len(items)} {name}: {', '.join(items[:5])}")
        if not self.lag.zero:
            found.append(
                f"final lag {self.lag.total}"
                + (
                    f", {self.lag.unpositioned} partition(s) unread"
                    if self.lag.unpositioned
                    else ""
                )
            )
        return found


def _stream(event: str, key: str) -> tuple[str, str]:
    return event.rpartition(":")[0], key


def order_violations(handlings: list[Handling]) -> list[str]:
    """Events first handled before an event published earlier by the same producer, same key.

    Per (producer, key), events sorted by number must have increasing
    first-handling times; an event whose first handling comes before the
    latest first handling of the events before it is a violation.
    """
    first: dict[str, Handling] = {}
    for handling in sorted(handlings, key=lambda h: h.at):
        first.setdefault(handling.event, handling)
    streams: dict[tuple[str, str], list[tuple[int, Handling]]] = defaultdict(list)
    for event, handling in first.items():
        streams[_stream(event, handling.key)].append((int(event.rpartition(":")[2]), handling))
    found = []
    for (_, key), events in sorted(streams.items()):
        latest: Handling | None = None
        for _, handling in sorted(events, key=lambda e: e[0]):
            if latest is not None and handling.at < latest.at:
                found.append(f"{key}: {handling.event} first handled before {latest.event}")
            if latest is None or handling.at > latest.at:
                latest = handling
    return found


def check(history: History) -> Verdict:
    acknowledged = [p.event for p in history.published if p.acknowledged]
    counts = Counter(h.event for h in history.handlings)
    stored = set(history.stored)
    effects: Counter[str] | None = None
    if history.effects is not None:
        effects = Counter(history.effects)
    return Verdict(
        acknowledged=len(acknowledged),
        publish_failures=sum(not p.acknowledged for p in history.published),
        stored=len(history.stored),
        handled=len(counts),
        handlings=len(history.handlings),
        lost=[e for e in acknowledged if e not in counts],
        unhandled=[e for e in history.stored if e not in counts],
        not_stored=[e for e in acknowledged if e not in stored],
        order_violations=order_violations(history.handlings),
        lag=history.lag,
        rehandlings=dict(sorted(Counter(counts.values()).items())),
        effects=None if effects is None else sum(effects.values()),
        duplicate_effects=None
        if effects is None
        else [f"{e} x{n}" for e, n in sorted(effects.items()) if n > 1],
        missing_effects=None if effects is None else [e for e in counts if e not in effects],
        dead_lettered=history.dead_lettered,
    )
