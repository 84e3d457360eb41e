"""The SNS/SQS adapter under faults, with real processes: workers killed with SIGKILL,
the moto server stopped and started again mid-flow. (An unreachable endpoint is in
test_sqs.py: ``test_connect_raises_broker_unavailable_within_the_timeout``.)

moto keeps its state in memory, so a restarted moto is empty: what was queued is gone.
The restart test therefore checks what a client can do about it: producers and
consumers notice, create their topics, queues and subscriptions again, and every
event confirmed after that is handled. On AWS the service does not lose its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _moto import Moto
from _services import (
    kill_workers_mid_flow,
    publish_confirmed,
    until,
    warm_up,
)

from tidings import App
from tidings.errors import ConnectionError as BrokerConnectionError
from tidings.errors import PublishError

FAST = "wait=1&receivers=1&publish_timeout=30"


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    server.start()
    yield server
    server.stop()


async def test_workers_killed_with_sigkill_lose_no_published_event(
    moto: Moto, tmp_path: Path
) -> None:
    """What a killed worker held comes back once its visibility timeout (ack_wait, 30 s)
    ends, to the others: every confirmed event is handled at least once."""
    url = moto.url("sns+sqs", FAST)
    topic, log, count = f"faults.kill-{uuid.uuid4().hex[:6]}", tmp_path / "handled.log", 400

    async def started(producer: App) -> None:
        await asyncio.sleep(3)  # both workers subscribe (the group's queue exists)
        await warm_up(producer, topic, log, 60)

    await kill_workers_mid_flow(
        url,
        topic,
        log,
        started,
        count=count,
        batch=50,
        kills=(150, 300),
        pause=0.05,
        timeout=120,
    )


async def test_clients_recover_from_a_server_restart(moto: Moto) -> None:
    url = moto.url("sns+sqs", FAST)
    topic = f"faults.restart-{uuid.uuid4().hex[:6]}"
    seen: set[int] = set()
    consumer = App("consumer", broker=url)

    @consumer.subscribe(topic, group="restart", concurrency=4)
    async def handle(data: dict[str, Any]) -> None:
        seen.add(data["seq"])

    producer = App("producer", broker=url)
    async with consumer, producer:
        await publish_confirmed(producer, topic, 100, 25, _nothing)
        assert await until(lambda: len(seen) == 100, 60), "handled before the restart"
        await asyncio.to_thread(moto.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(moto.start)
        # Until a probe goes through: the producer made the topic again, the consumer its
        # queue and subscription.
        recovered = False
        for probe in range(1000, 1060):
            with contextlib.suppress(PublishError, BrokerConnectionError):
                await producer.publish({"seq": probe}, topic=topic, type="Probe")
            if await until(lambda: any(n >= 1000 for n in seen), 2.0):
                recovered = True
                break
        assert recovered, "no event went through after the restart"
        await publish_confirmed(producer, topic, 300, 25, _nothing)
        rest = set(range(100, 300))
        assert await until(lambda: rest <= seen, 60), f"{len(rest - seen)} events lost"


async def _nothing(published: int) -> None:
    return None
