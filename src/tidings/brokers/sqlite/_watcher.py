"""Partition heads, and waking the members that read them, whoever wrote.

Local publishes advance the heads directly. Other processes' commits are
noticed by watching the WAL file's stamp (a ``stat`` every few milliseconds
while busy, slower when idle), which also tells members when their group's
membership changed, so they rebalance without waiting for a heartbeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.brokers.sqlite._reader import Reader
from tidings.brokers.sqlite._writer import Writer, wal_stamp
from tidings.errors import BrokerClosedError

if TYPE_CHECKING:
    from tidings.brokers.sqlite._member import SqliteSubscription

__all__ = ["Watcher"]


class Watcher:
    """Knows each partition's head; wakes subscriptions when one moves."""

    def __init__(
        self,
        wal_path: str,
        reader: Reader,
        writer: Writer,
        subscriptions: Sequence[SqliteSubscription],
        session_timeout: float,
    ) -> None:
        #: (topic_id, partition) -> next offset to be written, as far as known here.
        self.heads: dict[tuple[int, int], int] = {}
        self._wal_path = wal_path
        self._reader = reader
        self._writer = writer
        self._subscriptions = subscriptions
        self._session_timeout = session_timeout
        self._task: asyncio.Task[None] | None = None

    def advance(self, topic_id: int, heads: dict[int, int]) -> None:
        """Partitions of ``topic_id`` grew to ``heads``: wake the subscriptions reading it."""
        moved = False
        for p, head in heads.items():
            key = (topic_id, p)
            if self.heads.get(key, 0) < head:
                self.heads[key] = head
                moved = True
        if moved:
            for subscription in self._subscriptions:
                if topic_id in subscription.topics:
                    subscription.wake()

    async def refresh_heads(self, topic_ids: Sequence[int]) -> None:
        if topic_ids:
            for topic_id, heads in (await self._reader.heads(topic_ids)).items():
                self.advance(topic_id, heads)

    def start(self) -> None:
        """Start watching for other processes' commits (once there are subscriptions)."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="tidings-sqlite-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        """Poll the WAL file's stamp, cheaply.

        A stamp this broker's own writer left is ignored (local publishes wake
        subscribers directly), so an idle member's heartbeats do not keep the
        watcher in its fast mode. Heads are re-read now and then regardless, as a
        safety net for a foreign commit hidden behind an own one.
        """
        last: tuple[int, int] | None = None
        active_until = 0.0
        last_refresh = 0.0
        while True:
            stamp = wal_stamp(self._wal_path)
            now = time.monotonic()
            active = now < active_until
            foreign = stamp != last and stamp != self._writer.wal_stamp
            last = stamp
            if foreign:
                active_until = now + 1.0
            if foreign or now - last_refresh > (0.1 if active else 0.5):
                last_refresh = now
                try:
                    await self._refresh()
                except BrokerClosedError:
                    return
            await asyncio.sleep(0.002 if active or foreign else 0.02)

    async def _refresh(self) -> None:
        """Re-read heads of watched topics, and rebalance groups whose membership changed."""
        subscriptions = list(self._subscriptions)
        await self.refresh_heads(sorted({t for s in subscriptions for t in s.topics}))
        groups = sorted({s.group for s in subscriptions})
        if not groups:
            return
        counts = await self._reader.live_members(groups, time.time() - self._session_timeout)
        for subscription in subscriptions:
            if counts.get(subscription.group, 0) != subscription.members_seen:
                subscription.members_seen = counts.get(subscription.group, 0)
                subscription.poke()
