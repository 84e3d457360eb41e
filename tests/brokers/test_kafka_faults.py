"""The Kafka adapter under faults, with real processes: killed workers, a restarted server,
an unreachable one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _services import free_port, stop_process
from kafka_server import TEST_OPTIONS, Tansu, started_tansu

import tidings
from tidings import App
from tidings.broker import Message
from tidings.brokers.kafka import KafkaBroker
from tidings.errors import BrokerUnavailable, PublishError
from tidings.testing.semantics import eventually

HERE = Path(__file__).parent
#: This tree's sources (and this folder, for kafka_worker), first on every child's path.
SRC = os.pathsep.join(
    [str(Path(tidings.__file__).parents[1]), str(HERE), os.environ.get("PYTHONPATH", "")]
)


@pytest.fixture
def server() -> Iterator[Tansu]:
    """A tansu of this test's own (the tests stop and restart it)."""
    with started_tansu() as tansu:
        yield tansu


def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "TIDINGS_BROKER": "", "PYTHONPATH": SRC},
        check=False,
    )


def _worker(url: str, topic: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC, "KAFKA_FAULTS_TOPIC": topic}
    env["KAFKA_FAULTS_LOG"] = str(log)
    return subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", "run", "kafka_worker:app", "--broker", url,
         "--log-level", "error"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _handled(log: Path) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                seen.setdefault(int(parts[0]), []).append(int(parts[1]))
    return seen


def test_workers_killed_mid_stream_lose_no_published_event(server: Tansu, tmp_path: Path) -> None:
    url = server.url(TEST_OPTIONS)
    topic = f"faults-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "handled.log"
    total = 600
    workers = [_worker(url, topic, log), _worker(url, topic, log)]

    async def publish(start: int, stop: int) -> None:
        app = App("faults-producer", broker=url)
        async with app:
            for first in range(start, stop, 50):
                batch = [
                    app.event({"seq": seq}, type="Tick", key=f"k{seq % 16}")
                    for seq in range(first, min(first + 50, stop))
                ]
                await app.publish_batch(batch, topic=topic)
                await asyncio.sleep(0.05)

    try:
        asyncio.run(publish(0, total // 3))
        deadline = time.monotonic() + 30
        while not _handled(log) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-stream, without a goodbye
        workers[0].wait(5)
        asyncio.run(publish(total // 3, 2 * total // 3))
        workers[0] = _worker(url, topic, log)
        os.kill(workers[1].pid, signal.SIGKILL)
        workers[1].wait(5)
        workers[1] = _worker(url, topic, log)
        asyncio.run(publish(2 * total // 3, total))
        deadline = time.monotonic() + 60
        while len(_handled(log)) < total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for worker in workers:
            stop_process(worker)
    handled = _handled(log)
    missing = sorted(set(range(total)) - set(handled))
    assert not missing, f"{len(missing)} published events never handled, e.g. {missing[:10]}"


async def test_a_restarted_server_is_rejoined_by_producers_and_consumers(
    server: Tansu,
) -> None:
    """tansu (memory storage) forgets everything on restart: the clients reconnect, the
    topic and group are recreated, and events published after the restart are handled."""
    url = server.url(TEST_OPTIONS + "&connect_timeout=3")
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    seen: list[int] = []
    app = App("restarted", broker=url)

    @app.subscribe(topic, group="restart")
    async def handle(data: dict[str, Any]) -> None:
        seen.append(data["n"])

    async with app:
        await app.publish({"n": 1}, topic=topic, type="T")
        await eventually(lambda: 1 in seen, 15, "the first event")
        await _committed(app.broker, "restart", 15)  # the restart loses committed progress
        server.stop()
        with pytest.raises(PublishError):
            await app.publish({"n": 2}, topic=topic, type="T")
        assert server.start()
        deadline = time.monotonic() + 40
        published = False
        while time.monotonic() < deadline and not published:
            try:
                await app.publish({"n": 3}, topic=topic, type="T")
                published = True
            except PublishError:
                await asyncio.sleep(0.5)
        assert published, "the producer did not come back after the server restarted"
        await eventually(lambda: 3 in seen, 40, "the consumer to come back after the restart")


async def _committed(broker: Any, group: str, patience: float) -> None:
    """Wait until ``group`` has committed everything it read (lag 0 with a position)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        groups = {g.name: g for g in await broker.list_groups()}
        info = groups.get(group)
        if info is not None and info.lag == 0 and any(p.committed > 0 for p in info.partitions):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"group {group} did not commit its progress in {patience}s")


def test_unreachable_broker_is_one_cli_line_naming_the_url_without_password() -> None:
    port = free_port()
    url = f"kafka://user:secret@127.0.0.1:{port}?connect_timeout=1"
    started = time.monotonic()
    result = _cli("tail", "bars", "--broker", url)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "secret" not in lines[0]
    assert time.monotonic() - started < 20


async def test_unreachable_broker_raises_broker_unavailable_within_the_timeout() -> None:
    broker = KafkaBroker.from_url(f"kafka://127.0.0.1:{free_port()}?connect_timeout=1")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        await broker.connect()
    assert time.monotonic() - started < 5
    await broker.close()


async def test_publish_to_a_vanished_server_raises_publish_error(server: Tansu) -> None:
    broker = KafkaBroker.from_url(server.url("connect_timeout=2"))
    await broker.connect()
    try:
        await broker.publish("gone", [Message(b"x")])
        server.stop()
        started = time.monotonic()
        with pytest.raises(PublishError):
            await broker.publish("gone", [Message(b"y")])
        assert time.monotonic() - started < 15
    finally:
        await broker.close()
