"""Observer hooks: batches report each event, and a hook nobody overrides is skipped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tidings import App, Delivery, Event, Observer
from tidings.hooks import Observers


class Handled(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def handled(self, subscription: str, delivery: Delivery, event: Event, seconds: float) -> None:
        self.events.append((event.data["n"], seconds))


async def test_a_batch_handling_reports_each_of_its_events() -> None:
    app = App("batches", broker="memory://observed-batches")
    seen = Handled()
    app.add_observer(seen)
    got: list[int] = []

    @app.subscribe("t", group="g", batch_size=10, batch_timeout=0.2)
    async def work(events: list[Event]) -> None:
        got.extend(e.data["n"] for e in events)

    async with app:
        await app.publish_batch([app.event({"n": n}, type="T") for n in range(3)], topic="t")
        for _ in range(300):
            if len(seen.events) == 3:
                break
            await asyncio.sleep(0.01)
    assert sorted(n for n, _ in seen.events) == [0, 1, 2]
    assert len({seconds for _, seconds in seen.events}) == 1  # the batch's time, for each


def test_only_the_hooks_an_observer_overrides_are_called() -> None:
    class Retries(Observer):
        def retried(self, *args: Any) -> None: ...

    observers = Observers([Retries()])
    assert observers and observers.overrides("retried")
    assert not observers.overrides("received") and not observers.overrides("handled")


async def test_an_at_most_once_failure_logs_the_event(caplog: pytest.LogCaptureFixture) -> None:
    app = App("amo", broker="memory://amo-log")
    done: list[int] = []

    @app.subscribe("t", group="g", delivery="at_most_once")
    async def work(data: dict[str, Any]) -> None:
        done.append(1)
        raise ValueError("lost")

    with caplog.at_level(logging.ERROR, logger="tidings.consumer"):
        async with app:
            sent = await app.publish({"n": 1}, topic="t", type="T")
            for _ in range(300):
                if done and caplog.records:
                    break
                await asyncio.sleep(0.01)
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    fields = record.tidings  # type: ignore[attr-defined]
    assert fields["event_id"] == sent.id and fields["outcome"] == "dropped"
    assert "at most once" in record.getMessage()
