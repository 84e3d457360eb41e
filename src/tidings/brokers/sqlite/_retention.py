"""Topic settings and the retention pass of the embedded broker (writer transactions)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from tidings.brokers.sqlite._ops import READER_PREFIX, drop_group, find_or_create_topic

__all__ = ["TopicSettings", "apply_retention", "drop_dead_readers", "ensure_topic"]


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """What :func:`ensure_topic` sets."""

    partitions: int | None
    """The count asked for (None: the existing one, or ``default_partitions`` if new)."""
    default_partitions: int
    retention_ms: int | None
    retention_bytes: int | None
    compact: bool


def ensure_topic(
    conn: sqlite3.Connection, name: str, settings: TopicSettings, now: float
) -> tuple[int, int]:
    """Create ``name`` or change its retention; the partition count is fixed at creation."""
    asked = settings.partitions
    topic_id, existing = find_or_create_topic(conn, name, asked or settings.default_partitions, now)
    if asked is not None and existing != asked:
        raise ValueError(
            f"topic {name!r} has {existing} partitions; the count cannot change "
            "(keys would move to other partitions)"
        )
    conn.execute(
        "UPDATE topics SET retention_ms = ?, retention_bytes = ?, compact = ? WHERE id = ?",
        (settings.retention_ms, settings.retention_bytes, int(settings.compact), topic_id),
    )
    return topic_id, existing


def apply_retention(
    conn: sqlite3.Connection, now: float, dedup_window: float, session_timeout: float
) -> int:
    """Delete what each topic's retention no longer keeps; return how many messages went.

    By age: messages older than ``retention_ms``. By size: per partition, the
    oldest messages beyond ``retention_bytes`` of values. Compaction: all but
    the newest message of each key (keyless messages are kept). Exactly-once
    dedup records older than ``dedup_window`` seconds go too, and the groups of
    group-less readers silent for ``session_timeout`` (their process died).
    """
    drop_dead_readers(conn, now - session_timeout)
    conn.execute("DELETE FROM processed WHERE processed_at < ?", (now - dedup_window,))
    removed = 0
    topics = conn.execute(
        "SELECT id, partitions, retention_ms, retention_bytes, compact FROM topics "
        "WHERE retention_ms IS NOT NULL OR retention_bytes IS NOT NULL OR compact != 0"
    ).fetchall()
    for topic_id, partitions, retention_ms, retention_bytes, compact in topics:
        if retention_ms is not None:
            removed += conn.execute(
                "DELETE FROM messages WHERE topic_id = ? AND published_at < ?",
                (topic_id, now - retention_ms / 1000.0),
            ).rowcount
        if retention_bytes is not None:
            for p in range(partitions):
                row = conn.execute(
                    "SELECT offset FROM (SELECT offset, SUM(LENGTH(value)) OVER "
                    "(ORDER BY offset DESC) AS kept FROM messages "
                    "WHERE topic_id = ? AND partition = ?) WHERE kept > ? "
                    "ORDER BY offset DESC LIMIT 1",
                    (topic_id, p, retention_bytes),
                ).fetchone()
                if row is not None:
                    removed += conn.execute(
                        "DELETE FROM messages WHERE topic_id = ? AND partition = ? AND offset <= ?",
                        (topic_id, p, row[0]),
                    ).rowcount
        if compact:
            removed += conn.execute(
                "DELETE FROM messages WHERE topic_id = ? AND key IS NOT NULL AND offset < "
                "(SELECT MAX(newer.offset) FROM messages AS newer WHERE newer.topic_id = "
                "messages.topic_id AND newer.partition = messages.partition "
                "AND newer.key = messages.key)",
                (topic_id,),
            ).rowcount
    return removed


def drop_dead_readers(conn: sqlite3.Connection, alive_since: float) -> int:
    """Delete the groups of group-less readers whose process died; return how many."""
    dead = [
        row[0]
        for row in conn.execute(
            "SELECT grp FROM members WHERE substr(grp, 1, ?) = ? "
            "GROUP BY grp HAVING MAX(heartbeat) < ?",
            (len(READER_PREFIX), READER_PREFIX, alive_since),
        )
    ]
    for group in dead:
        drop_group(conn, group)
    return len(dead)
