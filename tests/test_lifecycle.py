"""Startup and shutdown hooks, handler dependencies, and apps that start again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

from tidings import App, ConfigurationError, Depends, Event, RetryPolicy, StartupError
from tidings.testing import Harness


def _url() -> str:
    return f"memory://lifecycle-{uuid.uuid4().hex}"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_hooks_run_in_order_around_the_handlings() -> None:
    app = App("hooks", broker=_url())
    trail: list[str] = []

    @app.on_startup
    async def open_pool() -> None:
        trail.append("startup 1")

    @app.on_startup
    def warm_cache() -> None:  # a plain function works too
        trail.append("startup 2")

    @app.on_shutdown
    async def close_pool() -> None:
        trail.append("shutdown 1")

    @app.on_shutdown
    def flush() -> None:
        trail.append("shutdown 2")

    @app.subscribe("jobs", group="g")
    async def work(data: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)
        trail.append("handled")

    async with app:
        await app.publish({"n": 1}, topic="jobs", type="Job")
        await _until(lambda: "handled" in trail or app.stats()["hooks.work"].received > 0)
    assert trail == ["startup 1", "startup 2", "handled", "shutdown 1", "shutdown 2"]


async def test_a_failing_startup_hook_stops_the_start_with_a_clear_error() -> None:
    app = App("hooks", broker=_url())
    handled: list[Any] = []
    shut: list[str] = []

    @app.on_startup
    async def connect_db() -> None:
        raise OSError("db unreachable")

    @app.on_shutdown
    def never() -> None:
        shut.append("ran")

    @app.subscribe("jobs", group="g")
    async def work(data: dict[str, Any]) -> None:
        handled.append(data)

    with pytest.raises(StartupError, match=r"startup hook .*connect_db failed: OSError"):
        await app.start()
    assert app.health.status == "stopped" and not handled and not shut


async def test_a_failing_shutdown_hook_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("hooks", broker=_url())
    ran: list[str] = []

    @app.on_shutdown
    def broken() -> None:
        raise RuntimeError("boom")

    @app.on_shutdown
    def second() -> None:
        ran.append("second")

    async with app:
        pass
    assert ran == ["second"]
    assert any(
        "shutdown hook" in r.getMessage() and "broken" in r.getMessage() for r in caplog.records
    )


class Session:
    """A stand-in for a database session: records what happened to it."""

    def __init__(self, log: list[str], n: int) -> None:
        self.log, self.n = log, n

    def add(self, what: str) -> None:
        self.log.append(f"session {self.n}: {what}")


async def test_a_handling_scoped_dependency_is_made_and_closed_per_handling() -> None:
    log: list[str] = []
    made = iter(range(1, 100))

    async def session() -> AsyncIterator[Session]:
        s = Session(log, next(made))
        try:
            yield s
        except Exception:
            s.add("rollback")
            raise
        else:
            s.add("commit")

    app = App("deps", broker=_url())

    @app.subscribe(
        "orders", group="g", retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter="none")
    )
    async def place(data: dict[str, Any], db: Annotated[Session, Depends(session)]) -> None:
        db.add(f"insert {data['n']}")
        if data["n"] == 2 and db.n == 2:
            raise ValueError("constraint")

    async with app:
        await app.publish({"n": 1}, topic="orders", type="Order", key="a")
        await app.publish({"n": 2}, topic="orders", type="Order", key="a")
        await _until(lambda: log.count("session 3: commit") == 1)
    assert log == [
        "session 1: insert 1",
        "session 1: commit",
        "session 2: insert 2",
        "session 2: rollback",
        "session 3: insert 2",
        "session 3: commit",
    ]


async def test_an_app_scoped_dependency_is_made_once_and_closed_at_stop() -> None:
    opened: list[str] = []

    def pool() -> Iterator[list[str]]:
        opened.append("open")
        yield opened
        opened.append("close")

    shared = Depends(pool, scope="app")
    app = App("deps", broker=_url())
    seen: list[int] = []

    @app.subscribe("a", group="a")
    async def first(data: dict[str, Any], p: Annotated[list[str], shared]) -> None:
        seen.append(id(p))

    @app.subscribe("b", group="b")
    async def second(data: dict[str, Any], p: list[str] = shared) -> None:  # default style
        seen.append(id(p))

    async with app:
        assert opened == ["open"]
        await app.publish({}, topic="a", type="A")
        await app.publish({}, topic="b", type="B")
        await _until(lambda: len(seen) == 2)
    assert opened == ["open", "close"]
    assert seen == [id(opened)] * 2


def test_a_dependency_factory_that_takes_arguments_is_refused() -> None:
    def needs(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="takes no arguments, but asks for x"):
        Depends(needs)


async def test_a_stopped_app_starts_again_afresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    app = App("again", broker=url)
    handled: list[int] = []
    starts: list[int] = []

    @app.on_startup
    def count() -> None:
        starts.append(1)

    @app.subscribe("t", group="g")
    async def h(data: dict[str, Any]) -> None:
        handled.append(data["n"])

    for n in (1, 2, 3):
        async with app:
            await app.publish({"n": n}, topic="t", type="T")
            await _until(lambda n=n: n in handled)  # type: ignore[misc]
    assert handled == [1, 2, 3] and len(starts) == 3


# A module-level app, tested by several tests with the pytest fixture (each test
# attaches a harness to the same app; the app's own broker comes back after).
shop = App("shop-module", broker="sqlite:///./never-created.db")
orders: list[str] = []


@shop.subscribe("orders", group="g")
async def take(order: dict[str, Any]) -> Event | None:
    orders.append(order["id"])
    return None


@pytest.mark.parametrize("order", ["o-1", "o-2"])
async def test_a_module_level_app_in_several_tests(
    tidings_harness: Callable[..., Harness], order: str
) -> None:
    async with tidings_harness(shop) as harness:
        await shop.publish({"id": order}, topic="orders", type="OrderPlaced")
        await harness.drain()
        harness.assert_handled("OrderPlaced", count=1, id=order)
    assert shop.broker_url == "sqlite:///./never-created.db"  # restored for a real run
