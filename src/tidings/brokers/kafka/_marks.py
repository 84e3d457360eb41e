"""Durable "handed out" marks: how a redelivery after a crash knows it is not a first attempt.

Kafka counts no deliveries. Before a member hands out records beyond its
partition's mark, it stores the new mark (the offset after the last record
handed out) as the committed offset of a shadow group,
``__tidings-handed.<group>``, with a member-less OffsetCommit. A member that
is assigned the partition later reads the mark: a record below it was handed
out before, so it comes with ``attempt >= 2``. Exact counts beyond 2 are kept
only in the member's memory (nacks).
"""

from __future__ import annotations

import logging

from tidings.brokers.kafka._offsets import GroupOffsets

__all__ = ["SHADOW_PREFIX", "HandedMarks"]

log = logging.getLogger("tidings.kafka")

SHADOW_PREFIX = "__tidings-handed."


class HandedMarks:
    def __init__(self, offsets: GroupOffsets, group: str) -> None:
        self._offsets = offsets
        self.group = SHADOW_PREFIX + group

    async def load(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        try:
            return await self._offsets.fetch(self.group, partitions)
        except Exception as exc:
            log.warning("kafka: could not read handed-out marks of %s: %s", self.group, exc)
            return {}

    async def store(self, marks: dict[tuple[str, int], int]) -> None:
        """Store the marks; a failure is logged (a later redelivery may then read attempt 1)."""
        try:
            error = await self._offsets.commit(self.group, marks)
        except Exception as exc:
            log.warning("kafka: could not store handed-out marks of %s: %s", self.group, exc)
            return
        if error:
            log.warning("kafka: handed-out marks of %s refused (error %s)", self.group, error)
