"""Counters of one subscription since its app started (``App.stats()``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ConsumerStats"]


@dataclass
class ConsumerStats:
    """Counters of one subscription since start."""

    received: int = 0
    handled: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    restarts: int = 0
    #: Skipped events per CloudEvents type (no handler takes the type, or the filter said no).
    skipped_types: dict[str, int] = field(default_factory=dict)
