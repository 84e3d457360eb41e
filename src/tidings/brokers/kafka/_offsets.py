"""Committed offsets of any group, read and written without joining it (raw OffsetFetch/Commit).

Used for the handed-out marks (:mod:`._marks`), for seeking a group that has
no member in this process, and for lag. A commit with generation -1 is what
Kafka's own tools do: the broker accepts it only while the group has no members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["GroupOffsets"]

_GROUP_COORDINATOR = 0
_COORDINATOR_MOVED = (14, 15, 16)  # loading, not available, not coordinator
Partition = tuple[str, int]


class GroupOffsets:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._nodes: dict[str, int] = {}

    async def _send(self, group: str, request: Any) -> Any:
        node = self._nodes.get(group)
        if node is None:
            node = await self._client.coordinator_lookup(_GROUP_COORDINATOR, group)
            self._nodes[group] = node
        return await self._client.send(node, request)

    async def fetch(self, group: str, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The committed offset of each partition that has one."""
        from aiokafka.protocol.commit import OffsetFetchRequest

        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        if not by_topic:
            return {}
        request = OffsetFetchRequest(group, list(by_topic.items()))
        for _ in range(3):
            response = await self._send(group, request)
            found: dict[Partition, int] = {}
            moved = False
            for topic, rows in response.topics:
                for row in rows:
                    partition, offset, error = row[0], row[1], row[-1]
                    if error in _COORDINATOR_MOVED:
                        moved = True
                    elif error == 0 and offset >= 0:
                        found[(topic, partition)] = offset
            if not moved:
                return found
            self._nodes.pop(group, None)
        return {}

    async def commit(self, group: str, offsets: Mapping[Partition, int]) -> int:
        """Commit ``offsets`` as a member-less client; the first error code (0: none)."""
        from aiokafka.protocol.commit import OffsetCommitRequest

        by_topic: dict[str, list[tuple[int, int, str]]] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append((partition, offset, ""))
        request = OffsetCommitRequest(group, -1, "", -1, list(by_topic.items()))
        response = await self._send(group, request)
        for _topic, rows in response.topics:
            for _partition, error in rows:
                if error:
                    if error in _COORDINATOR_MOVED:
                        self._nodes.pop(group, None)
                    return int(error)
        return 0
