"""pytest plugin (registered through the ``pytest11`` entry point).

Fixture ``tidings_harness``: a factory of :class:`~tidings.testing.Harness`
objects; harnesses still running when the test ends are reported::

    async def test_reserve(tidings_harness):
        async with tidings_harness(app) as harness:
            await app.publish(OrderPlaced(...))
            await harness.drain()
            harness.assert_published("InventoryReserved", count=1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tidings.app import App
from tidings.testing.harness import Harness


@pytest.fixture
def tidings_harness() -> Iterator[Callable[..., Harness]]:
    created: list[Harness] = []

    def make(*apps: App, partitions: int = 4) -> Harness:
        harness = Harness(*apps, partitions=partitions)
        created.append(harness)
        return harness

    yield make
    running = [h for h in created for app in h.apps if app._state == "started"]
    if running:
        pytest.fail("a tidings Harness was left running: use `async with tidings_harness(app)`")
