"""Delays kept by the consumer (a broker without delayed publish): never early, never stuck."""

from __future__ import annotations

import asyncio
import time

import pytest

from tidings import App, Event


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_more_delayed_events_than_the_prefetch_are_all_handled(concurrency: int) -> None:
    """Delayed events fill the prefetch while they wait; once due, each is handled
    (a single-worker intake waiting for a free slot used to wait for ever)."""
    app = App("delays", broker=f"memory://delays-{concurrency}?delay=none")
    handled: list[float] = []

    async def handle(event: Event) -> None:
        handled.append(time.time())

    app.add_subscription(handle, "later", prefetch=4, concurrency=concurrency)
    async with app:
        published = time.time()
        for n in range(12):
            await app.publish({"n": n}, type="Later", topic="later", key=f"k{n}", delay=0.3)
        for _ in range(100):
            if len(handled) == 12:
                break
            await asyncio.sleep(0.05)
    assert len(handled) == 12
    assert min(handled) >= published + 0.3  # never early
