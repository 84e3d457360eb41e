"""A prefetch full of events waiting behind a retry of their key must not stall the consumer.

Events of a key that is away for a retry wait, unhandled, in the consumer and hold
their prefetch slots. When they fill the prefetch, the consumer must still take the
retried event back from the broker (SEMANTICS.md: a retry holds back only later
events of its own key), while memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from tidings import App, Context, Retry


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return f"memory://prefetch-{uuid.uuid4().hex[:8]}"
    return f"sqlite:///{tmp_path / 'p.db'}?heartbeat=0.2"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("concurrency", [1, 4])
async def test_events_behind_a_retry_that_fill_the_prefetch_do_not_stall_it(
    kind: str, concurrency: int, tmp_path: Path
) -> None:
    app = App("prefetch", broker=_url(kind, tmp_path))
    handled: list[tuple[str, int]] = []
    all_handled = asyncio.Event()
    most_unsettled = 0

    @app.subscribe("t", group="g", prefetch=4, concurrency=concurrency, start="earliest")
    async def on_event(data: dict[str, Any], ctx: Context) -> None:
        nonlocal most_unsettled
        consumer = next(iter(app._consumers))
        most_unsettled = max(most_unsettled, len(consumer.flow.unsettled))
        if data["key"] == "hot" and data["n"] == 0 and ctx.attempt == 1:
            raise Retry(delay=0.2)
        handled.append((data["key"], data["n"]))
        if len(handled) == 15:
            all_handled.set()

    async with app:
        for n in range(12):
            await app.publish({"n": n, "key": "hot"}, topic="t", type="T", key="hot")
        for n in range(3):
            await app.publish({"n": n, "key": "other"}, topic="t", type="T", key="other")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_handled.wait(), 15)
    hot = [n for key, n in handled if key == "hot"]
    assert hot == list(range(12)), f"handled {handled}"
    assert sorted(n for key, n in handled if key == "other") == [0, 1, 2]
    # Bounded: at most twice the prefetch.
    assert most_unsettled <= 2 * 4
