"""Offsets settled beyond a group's position, kept across restarts.

A group's position only moves past an offset once every earlier one is
settled, so events acked while an earlier one waits (behind its key, for a
retry, or for its time) would be handled again after a restart. Their
offsets are stored as ranges in ``settled_ahead`` with the position, and a
member that acquires the partition skips them.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Set

__all__ = ["MAX_KEPT", "decode", "encode", "load", "store"]

#: Beyond this many settled offsets ahead, none are stored (they are handled again
#: after a restart, as at-least-once allows) so that a flush stays cheap.
MAX_KEPT = 100_000


def encode(offsets: Set[int]) -> bytes:
    """Sorted ``[start, end)`` ranges of ``offsets``, as 64-bit integers."""
    flat = array("q")
    start = end = -2
    for offset in sorted(offsets):
        if offset == end:
            end += 1
            continue
        if start >= 0:
            flat.extend((start, end))
        start, end = offset, offset + 1
    if start >= 0:
        flat.extend((start, end))
    return flat.tobytes()


def decode(blob: bytes, committed: int) -> set[int]:
    """The offsets of ``blob`` at or beyond ``committed``."""
    flat = array("q")
    flat.frombytes(blob)
    out: set[int] = set()
    for i in range(0, len(flat) - 1, 2):
        out.update(range(max(flat[i], committed), flat[i + 1]))
    return out


def store(conn: sqlite3.Connection, group: str, topic_id: int, partition: int, blob: bytes) -> None:
    """Replace what is stored for a partition (``b""``: nothing is settled ahead)."""
    if blob:
        conn.execute(
            "INSERT OR REPLACE INTO settled_ahead VALUES (?, ?, ?, ?)",
            (group, topic_id, partition, blob),
        )
    else:
        conn.execute(
            "DELETE FROM settled_ahead WHERE grp = ? AND topic_id = ? AND partition = ?",
            (group, topic_id, partition),
        )


def load(conn: sqlite3.Connection, group: str, topic_id: int, partition: int) -> bytes:
    row = conn.execute(
        "SELECT ranges FROM settled_ahead WHERE grp = ? AND topic_id = ? AND partition = ?",
        (group, topic_id, partition),
    ).fetchone()
    return b"" if row is None else bytes(row[0])
