"""The Pub/Sub adapter under faults, with real processes: ``tidings run`` workers killed
with SIGKILL, the emulator stopped and started again mid-flow. (An unreachable or silent
endpoint is in test_pubsub.py: ``test_connect_raises_broker_unavailable_within_the_timeout``.)

The emulator keeps its state in memory, so a restarted emulator is empty: what was stored
is gone. The restart test therefore checks what a client can do about it: producers and
consumers notice, create their topics and subscriptions again, and every event confirmed
after that is handled. Google's service does not lose its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pubsub_emulator import Emulator
from _services import (
    kill_workers_mid_flow,
    publish_confirmed,
    until,
    warm_up,
)

from tidings import App
from tidings.broker import SubscribeOptions
from tidings.brokers.pubsub import PubSubBroker
from tidings.errors import ConnectionError as BrokerConnectionError
from tidings.errors import PublishError

FAST = "wait=2&pullers=1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    server = Emulator()
    server.start()
    yield server
    server.stop()


async def test_workers_killed_with_sigkill_lose_no_published_event(
    emulator: Emulator, tmp_path: Path
) -> None:
    """What a killed worker held comes back once its ack deadline (10 s here) passes, to
    the others: every confirmed event is handled at least once."""
    url = emulator.url(FAST)
    topic, log, count = f"faults.kill-{uuid.uuid4().hex[:6]}", tmp_path / "handled.log", 400
    # The group's subscription, made before the workers with Pub/Sub's shortest deadline.
    maker = PubSubBroker.from_url(url)
    await maker.connect()
    await (await maker.subscribe([topic], "faults", SubscribeOptions(ack_wait=10))).close()
    await maker.close()
    await kill_workers_mid_flow(
        url,
        topic,
        log,
        lambda producer: warm_up(producer, topic, log, 60),
        count=count,
        batch=50,
        kills=(150, 300),
        pause=0.05,
        timeout=90,
    )


async def test_clients_recover_from_an_emulator_restart(emulator: Emulator) -> None:
    url = emulator.url(FAST)
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
        await asyncio.to_thread(emulator.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(emulator.start)
        # Until a probe goes through: the producer made the topic again, the consumer its
        # subscription.
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
