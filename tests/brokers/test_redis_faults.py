"""The Redis Streams adapter under faults, with real processes: workers killed with
SIGKILL, a redis-server stopped and started again mid-flow.

Each test runs its own ``redis-server`` on a free port in a temporary directory
(append-only file, fsync on every write), so stopping it disturbs nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _services import (
    free_port,
    kill_workers_mid_flow,
    publish_confirmed,
    service_missing,
    stop_process,
    until,
    wait_for_port,
    warm_up,
)

from tidings import App

#: Fast membership: a killed worker's partitions move within two seconds.
FAST_GROUPS = "heartbeat=0.25&session_timeout=1.5"


class OwnRedis:
    """``redis-server`` on a free port, persisting to ``directory`` (AOF, fsync always)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?{FAST_GROUPS}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("no redis-server on PATH")
        self.directory.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_for_port("127.0.0.1", self.port, 10.0):
            self.stop()
            service_missing("the redis-server started for the test did not listen")

    def stop(self) -> None:
        """SIGTERM (Redis writes and syncs its append-only file, then exits), by PID."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    own = OwnRedis(tmp_path / "redis")
    own.start()
    yield own
    own.stop()


async def test_workers_killed_with_sigkill_lose_no_published_event(
    server: OwnRedis, tmp_path: Path
) -> None:
    topic, log, count = "faults.kill", tmp_path / "handled.log", 3000
    handlings = await kill_workers_mid_flow(
        server.url,
        topic,
        log,
        lambda producer: warm_up(producer, topic, log, 30),
        count=count,
        batch=100,
        kills=(1000, 2000),
        pause=0.02,  # a flow over seconds, so kills land mid-stream
        timeout=40,
    )
    again = [attempt for attempt, _ in handlings if attempt > 1]
    assert again or len(handlings) > count, "a kill landed while a worker held events"


async def test_a_server_restart_mid_flow_loses_no_confirmed_event(server: OwnRedis) -> None:
    """SIGTERM to redis-server mid-flow, started again a second later on the same port and
    files: the producer and the consumer come back by themselves, nothing confirmed is lost."""
    topic, count = "faults.restart", 4000
    seen: set[int] = set()
    consumer = App("consumer", broker=server.url)

    @consumer.subscribe(topic, group="restart", concurrency=8)
    async def handle(data: dict[str, Any]) -> None:
        seen.add(data["seq"])

    producer = App("producer", broker=server.url)
    async with consumer, producer:
        before: list[int] = []

        async def restart(published: int) -> None:
            await asyncio.sleep(0.01)
            if published == 1500:
                before.append(len(seen))
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)

        await publish_confirmed(producer, topic, count, 100, restart)
        done = await until(lambda: len(seen) == count, 40)
        assert done, f"{count - len(seen)} confirmed events not handled after the restart"
        assert before and 0 < before[0] < count, "the server restarted mid-flow"
