"""Exactly-once on the embedded broker: a handling's outputs, dedup record and ack, atomically."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from tidings.broker import Message
from tidings.brokers.sqlite._ops import OffsetUpdate, append, write_position

__all__ = ["HandlingCommit", "is_processed"]

#: Per topic written, the new head of each partition written.
Heads = dict[int, dict[int, int]]


@dataclass(frozen=True, slots=True)
class HandlingCommit:
    """Exactly-once: one handling's follow-ups, dedup record and position, atomically.

    Calling it commits one handling and returns ``("fenced" | "duplicate" |
    "committed", heads written per topic)``. The writer hands a run of them to
    :meth:`run_many`, which commits them with a few set-wise statements instead
    of several statements each.
    """

    group: str
    member: str
    update: OffsetUpdate
    offset: int
    had_retry: bool
    dedup_key: str | None
    outputs: Sequence[tuple[int, int, Sequence[Message]]]
    now: float
    rotation: int

    def __call__(self, conn: sqlite3.Connection) -> tuple[str, Heads]:
        return HandlingCommit.run_many(conn, [self])[0]

    @staticmethod
    def run_many(
        conn: sqlite3.Connection, commits: Sequence[HandlingCommit]
    ) -> list[tuple[str, Heads]]:
        outcomes = _write_positions(conn, commits)
        _record_dedup(conn, commits, outcomes)
        heads = _append_outputs(conn, commits, outcomes)
        return [(outcome, heads if outcome == "committed" else {}) for outcome in outcomes]


def _write_positions(conn: sqlite3.Connection, commits: Sequence[HandlingCommit]) -> list[str]:
    """Positions, fenced by lease epoch (one write per partition and epoch); clear retries.

    Returns "committed" or "fenced" per commit.
    """
    positions: dict[tuple[str, str, int, int, int], OffsetUpdate] = {}
    for c in commits:
        u = c.update
        key = (c.group, c.member, u.topic_id, u.partition, u.epoch)
        seen = positions.get(key, u)
        positions[key] = OffsetUpdate(
            u.topic_id,
            u.partition,
            u.epoch,
            max(u.committed, seen.committed),
            max(u.delivered, seen.delivered),
        )
    owned = {key: write_position(conn, key[0], key[1], update) for key, update in positions.items()}
    outcomes = [
        "committed"
        if owned[(c.group, c.member, c.update.topic_id, c.update.partition, c.update.epoch)]
        else "fenced"
        for c in commits
    ]
    conn.executemany(
        "DELETE FROM retries WHERE grp = ? AND topic_id = ? AND partition = ? AND offset = ?",
        [
            (c.group, c.update.topic_id, c.update.partition, c.offset)
            for c, outcome in zip(commits, outcomes, strict=True)
            if outcome != "fenced" and c.had_retry
        ],
    )
    return outcomes


def _record_dedup(
    conn: sqlite3.Connection, commits: Sequence[HandlingCommit], outcomes: list[str]
) -> None:
    """Store dedup records; one already stored, or earlier in this run, makes a "duplicate"."""
    keyed = [
        (c.group, c.dedup_key)
        for c, outcome in zip(commits, outcomes, strict=True)
        if outcome != "fenced" and c.dedup_key is not None
    ]
    stored: set[tuple[str, str]] = set()
    for group in {g for g, _ in keyed}:
        wanted = [k for g, k in keyed if g == group]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            stored.update(
                (group, row[0])
                for row in conn.execute(
                    f"SELECT dedup_key FROM processed WHERE grp = ? AND dedup_key IN ({marks})",
                    (group, *chunk),
                )
            )
    fresh_records = []
    for i, c in enumerate(commits):
        if outcomes[i] == "fenced" or c.dedup_key is None:
            continue
        record = (c.group, c.dedup_key)
        if record in stored:
            outcomes[i] = "duplicate"
        else:
            stored.add(record)
            fresh_records.append((c.group, c.dedup_key, c.now))
    conn.executemany(
        "INSERT INTO processed (grp, dedup_key, processed_at) VALUES (?, ?, ?)",
        fresh_records,
    )


def _append_outputs(
    conn: sqlite3.Connection, commits: Sequence[HandlingCommit], outcomes: list[str]
) -> Heads:
    """Follow-ups of the committed handlings, in order, one append per topic."""
    by_topic: dict[int, tuple[int, list[Message]]] = {}
    for c, outcome in zip(commits, outcomes, strict=True):
        if outcome == "committed":
            for topic_id, partitions, messages in c.outputs:
                by_topic.setdefault(topic_id, (partitions, []))[1].extend(messages)
    rotation = commits[0].rotation
    return {
        topic_id: append(conn, topic_id, partitions, messages, commits[0].now, rotation)
        for topic_id, (partitions, messages) in by_topic.items()
    }


def is_processed(conn: sqlite3.Connection, group: str, dedup_key: str) -> bool:
    """True if ``dedup_key`` was committed by ``group`` (within the dedup window)."""
    row = conn.execute(
        "SELECT 1 FROM processed WHERE grp = ? AND dedup_key = ?", (group, dedup_key)
    ).fetchone()
    return row is not None
