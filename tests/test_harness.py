from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from tidings import App, Context, RetryPolicy
from tidings.testing import Harness


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int


def make_app() -> App:
    app = App("pingpong", broker="memory://")
    app.route(Ping, "ping")
    app.route(Pong, "pong")

    @app.subscribe("ping")
    async def answer(ping: Ping) -> Pong | None:
        if ping.n < 0:
            raise ValueError("negative")
        return Pong(n=ping.n)

    return app


async def test_harness_records_published_handled_and_failures() -> None:
    app = make_app()
    app.add_subscription(lambda pong: None, "pong", name="sink")
    async with Harness(app) as harness:
        await app.publish(Ping(n=1))
        await harness.drain()
        harness.assert_published("Pong", count=1, n=1)
        (handled,) = harness.assert_handled("Ping", count=1)
        assert handled.subscription == "pingpong.answer"
        assert [e.type for e in handled.follow_ups] == ["Pong"]
        assert harness.failures() == []
        with pytest.raises(AssertionError, match="expected 2"):
            harness.assert_published("Pong", count=2)
        with pytest.raises(AssertionError, match="no published events"):
            harness.assert_published("Nothing")


async def test_drain_waits_for_retries_and_reports_failures() -> None:
    app = App("r", broker="memory://")
    app.route(Ping, "ping")

    @app.subscribe("ping", retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
    async def fails(ping: Ping, ctx: Context) -> None:
        raise RuntimeError(f"attempt {ctx.attempt}")

    async with Harness(app) as harness:
        await app.publish(Ping(n=1))
        await harness.drain()
        assert [f.attempt for f in harness.failures()] == [1, 2, 3]
        assert len(harness.dead_letters("ping")) == 1


async def test_drain_times_out_with_a_reason() -> None:
    app = App("slow", broker="memory://")
    app.route(Ping, "ping")

    @app.subscribe("ping")
    async def slow(ping: Ping) -> None:
        import asyncio

        await asyncio.sleep(5)

    async with Harness(app) as harness:
        await app.publish(Ping(n=1))
        with pytest.raises(TimeoutError, match=r"unsettled|holds"):
            await harness.drain(timeout=0.2)
        await app.stop(timeout=0.05)


async def test_pytest_plugin_fixture(tidings_harness: Callable[..., Harness]) -> None:
    app = make_app()
    async with tidings_harness(app) as harness:
        await app.publish(Ping(n=3))
        await harness.drain()
        harness.assert_published("Pong", count=1, n=3)


def test_plugin_is_registered(pytestconfig: Any) -> None:
    assert pytestconfig.pluginmanager.has_plugin("tidings")
