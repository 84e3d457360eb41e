"""The embedded broker under faults: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tidings.broker import Message, SubscribeOptions
from tidings.brokers.sqlite import SqliteBroker
from tidings.testing.conformance import collect


async def _lag(broker: SqliteBroker, group: str) -> int:
    (info,) = [g for g in await broker.list_groups() if g.name == group]
    return info.lag


async def test_positions_are_kept_when_a_progress_write_fails(tmp_path: Path) -> None:
    """Acked progress whose write failed (a lock held too long) is written later.

    Before the fix, the failed flush dropped the dirty partitions: the acked
    events stayed as lag for good (and would be redelivered after a crash).
    """
    path = tmp_path / "faults.db"
    broker = SqliteBroker(str(path), partitions=1, busy_timeout=0.05, heartbeat_interval=0.2)
    await broker.connect()
    try:
        await broker.publish("t", [Message(b"m%d" % i, {}, "k") for i in range(10)])
        sub = await broker.subscribe(["t"], "g", SubscribeOptions(start="earliest"))
        got = await collect(sub, 5, ack=False)
        assert len(got) == 5
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            for delivery in got:
                await delivery.ack()
            await asyncio.sleep(0.6)  # the flush and a heartbeat fail meanwhile
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        lags = []
        for _ in range(50):  # a heartbeat (0.2 s) writes what the failed flush carried
            lags.append(await _lag(broker, "g"))
            if lags[-1] == 5:
                break
            await asyncio.sleep(0.1)
        assert lags[-1] == 5, lags  # the five acked events are not lag
    finally:
        await broker.close()
