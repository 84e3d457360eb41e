"""Sagas: steps, timeouts fired and ignored, compensation, redelivery, optimistic concurrency.

Every store runs the same tests: in memory, SQLite (a file) and PostgreSQL
(a schema of its own on 127.0.0.1:5432; skipped without the server, failing
under ``TIDINGS_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from _outbox_db import database_of_kind, postgres_schema, schema_url, until, until_async
from tidings import App, ConfigurationError, Event, Outgoing, RetryPolicy
from tidings.compensation import compensated_id
from tidings.errors import ConcurrencyError, StorageError
from tidings.middleware import PublishFn
from tidings.sagas import (
    SAGA_ID,
    MemorySagaStore,
    Saga,
    SagaContext,
    SagaRunner,
    SagaStore,
    SqlSagaStore,
    StoredSaga,
    statements,
)

STORES = ["memory", "sqlite", "postgresql"]


class Started(BaseModel):
    job_id: str
    steps: int = 2


class Progressed(BaseModel):
    job_id: str


class Failed(BaseModel):
    job_id: str
    reason: str


class TimedOut(BaseModel):
    job_id: str


class DoWork(BaseModel):
    job_id: str
    step: int


class Undo(BaseModel):
    job_id: str
    reason: str


class JobDone(BaseModel):
    job_id: str


class Job(BaseModel):
    steps: int = 0
    done: int = 0
    status: str = "new"


def job_saga(timeout: float = 30.0, pause: float = 0.0) -> Saga[Job]:
    """A job of ``steps`` steps: each Progressed asks for the next; a failure or a
    timeout undoes the work (compensation)."""
    saga = Saga("job", Job)
    key = {"key": lambda e: e.job_id}

    @saga.starts(Started, **key)
    def started(state: Job, event: Started, ctx: SagaContext) -> DoWork:
        state.steps, state.status = event.steps, "working"
        ctx.timeout(timeout, TimedOut(job_id=event.job_id))
        return DoWork(job_id=event.job_id, step=1)

    @saga.on(Progressed, **key)
    async def progressed(state: Job, event: Progressed, ctx: SagaContext) -> DoWork | None:
        if pause:
            await asyncio.sleep(pause)  # lets concurrent handlings of one job race
        state.done += 1
        if state.done < state.steps:
            return DoWork(job_id=event.job_id, step=state.done + 1)
        state.status = "done"
        ctx.emit(JobDone(job_id=event.job_id))
        ctx.complete()
        return None

    @saga.on(Failed, **key)
    def failed(state: Job, event: Failed, ctx: SagaContext) -> None:
        state.status = "failed"
        ctx.cancel_timeout(TimedOut)
        ctx.compensate(Undo(job_id=event.job_id, reason=event.reason))
        ctx.complete()

    @saga.on_timeout(TimedOut)
    def timed_out(state: Job, event: TimedOut, ctx: SagaContext) -> None:
        state.status = "timed out"
        ctx.compensate(Undo(job_id=event.job_id, reason="no progress in time"))
        ctx.complete()

    return saga


def routed(app: App) -> App:
    for payload_type, topic in [
        (Started, "jobs"),
        (Progressed, "jobs"),
        (Failed, "jobs"),
        (DoWork, "commands"),
        (Undo, "commands"),
        (JobDone, "jobs.done"),
    ]:
        app.route(payload_type, topic)
    return app


@contextlib.asynccontextmanager
async def store_of(kind: str, tmp_path: Path) -> AsyncIterator[SagaStore]:
    if kind == "memory":
        yield MemorySagaStore()
    elif kind == "sqlite":
        store = SqlSagaStore(f"sqlite:///{tmp_path / 'sagas.db'}")
        yield store
        await store.close()
    else:
        async with postgres_schema() as schema:
            store = SqlSagaStore(schema_url(schema))
            yield store
            await store.close()


class Shop:
    """An app running the job saga, and a second app recording what it sends."""

    def __init__(self, url: str, store: SagaStore, saga: Saga[Job], **install: object) -> None:
        self.app = routed(App("jobs", broker=url))
        self.runner = saga.install(self.app, store, **install)  # type: ignore[arg-type]
        self.observer = App("observer", broker=url)
        self.seen: list[Event] = []
        self.observer.add_subscription(self.record, ["commands", "jobs.done", "job.timeouts"])

    async def record(self, event: Event) -> None:
        self.seen.append(event)

    def sent(self, type_name: str) -> list[Event]:
        return [e for e in self.seen if e.type == type_name]

    async def __aenter__(self) -> Shop:
        await self.app.start()
        await self.observer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.observer.stop()
        await self.app.stop()


async def has_instance(runner: SagaRunner[Job], saga_id: str) -> bool:
    return await runner.get(saga_id) is not None


async def has_completed(runner: SagaRunner[Job], saga_id: str) -> bool:
    snapshot = await runner.get(saga_id)
    return snapshot is not None and snapshot.completed


# -- the store ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_a_store_saves_with_optimistic_concurrency(kind: str, tmp_path: Path) -> None:
    async with store_of(kind, tmp_path) as store:
        assert await store.load("job", "j1") is None
        assert await store.save("job", "j1", '{"a": 1}', False, 0) == 1
        with pytest.raises(ConcurrencyError, match="changed since version 0"):
            await store.save("job", "j1", '{"a": 2}', False, 0)  # created twice
        assert await store.save("job", "j1", '{"a": 2}', True, 1) == 2
        with pytest.raises(ConcurrencyError):
            await store.save("job", "j1", '{"a": 3}', False, 1)  # a stale version
        stored = await store.load("job", "j1")
        assert stored is not None
        assert (stored.document, stored.completed, stored.version) == ('{"a": 2}', True, 2)
        assert await store.load("other saga", "j1") is None


@pytest.mark.parametrize(
    "kind", ["asyncpg-pool", "psycopg-pool", "sqlalchemy-asyncpg", "sqlalchemy-sessions"]
)
async def test_the_sql_store_takes_the_applications_pool_or_engine(kind: str) -> None:
    async with postgres_schema() as schema, database_of_kind(kind, schema) as database:
        store = SqlSagaStore(database)
        assert await store.save("job", "j1", "{}", False, 0) == 1
        with pytest.raises(ConcurrencyError):
            await store.save("job", "j1", "{}", False, 0)
        assert await store.save("job", "j1", '{"done": 1}', True, 1) == 2
        assert await store.load("job", "j1") == StoredSaga('{"done": 1}', True, 2)
        await store.close()  # not ours: the pool stays open for the application


def test_the_table_is_defined_for_both_dialects() -> None:
    assert "bigint" in statements("postgresql")[0]
    assert "INTEGER" in statements("sqlite", "my_sagas")[0]
    with pytest.raises(ConfigurationError, match="table name"):
        statements("sqlite", "sagas; DROP TABLE x")


# -- steps, timeouts, compensation -------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_steps_move_the_state_and_send_commands_until_complete(
    kind: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    async with store_of(kind, tmp_path) as store, Shop(memory_url(), store, job_saga()) as shop:
        started = await shop.app.publish(Started(job_id="j1", steps=2), key="j1")
        assert await until(lambda: len(shop.sent("DoWork")) == 1, 5)
        first = shop.sent("DoWork")[0]
        assert first.data["step"] == 1
        assert (first.correlationid, first.causationid) == (started.id, started.id)
        snapshot = await shop.runner.get("j1")
        assert snapshot is not None
        assert (snapshot.state.status, snapshot.version, snapshot.completed) == (
            "working",
            1,
            False,
        )
        assert snapshot.pending_timeouts == ["TimedOut"]
        await shop.app.publish(Progressed(job_id="j1"), key="j1")
        await shop.app.publish(Progressed(job_id="j1"), key="j1")
        assert await until(lambda: len(shop.sent("JobDone")) == 1, 5)
        snapshot = await shop.runner.get("j1")
        assert snapshot is not None
        assert (snapshot.state.done, snapshot.state.status) == (2, "done")
        assert snapshot.completed and snapshot.pending_timeouts == []
        # After completion, events for the instance are ignored.
        await shop.app.publish(Progressed(job_id="j1"), key="j1")
        await shop.app.publish(Started(job_id="j1"), key="j1")
        assert await until(lambda: shop.app.idle, 5)
        await asyncio.sleep(0.2)
        after = await shop.runner.get("j1")
        assert after is not None and after.version == snapshot.version == 3
        assert [e.data["step"] for e in shop.sent("DoWork")] == [1, 2]


@pytest.mark.parametrize("kind", STORES)
async def test_a_timeout_fires_and_compensates(
    kind: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    async with (
        store_of(kind, tmp_path) as store,
        Shop(memory_url(), store, job_saga(timeout=0.3)) as shop,
    ):
        started = await shop.app.publish(Started(job_id="j2"), key="j2")
        assert await until(lambda: len(shop.sent("Undo")) == 1, 5)
        (timeout,) = shop.sent("TimedOut")
        assert timeout.extensions[SAGA_ID] == "j2"
        (undo,) = shop.sent("Undo")
        assert undo.data["reason"] == "no progress in time"
        assert compensated_id(undo) == started.id  # undoes the flow's root
        snapshot = await shop.runner.get("j2")
        assert snapshot is not None
        assert (snapshot.state.status, snapshot.completed) == ("timed out", True)


@pytest.mark.parametrize("kind", STORES)
async def test_a_timeout_is_ignored_once_the_saga_moved_on(
    kind: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    async with (
        store_of(kind, tmp_path) as store,
        Shop(memory_url(), store, job_saga(timeout=0.4)) as shop,
    ):
        await shop.app.publish(Started(job_id="done", steps=1), key="done")
        await shop.app.publish(Started(job_id="failed"), key="failed")
        await shop.app.publish(Progressed(job_id="done"), key="done")  # completes it
        await shop.app.publish(
            Failed(job_id="failed", reason="boom"), key="failed"
        )  # cancels its timeout
        assert await until(lambda: len(shop.sent("TimedOut")) == 2, 5)  # both still arrive
        assert await until(lambda: shop.app.idle, 5)
        await asyncio.sleep(0.2)
        (undo,) = shop.sent("Undo")  # the failure's compensation, no timeout's
        assert undo.data == {"job_id": "failed", "reason": "boom"}
        done, failed = await shop.runner.get("done"), await shop.runner.get("failed")
        assert done is not None and failed is not None
        assert (done.state.status, failed.state.status) == ("done", "failed")
        assert (done.version, failed.version) == (2, 2)


async def test_a_cancelled_timeout_of_a_running_saga_is_ignored(
    memory_url: Callable[[], str],
) -> None:
    saga = Saga("job", Job)

    @saga.starts(Started, key=lambda e: e.job_id)
    def started(state: Job, event: Started, ctx: SagaContext) -> None:
        ctx.timeout(0.2, TimedOut(job_id=event.job_id))
        ctx.timeout(0.4, TimedOut(job_id=event.job_id))  # replaces the first

    @saga.on(Progressed, key=lambda e: e.job_id)
    def progressed(state: Job, event: Progressed, ctx: SagaContext) -> None:
        ctx.cancel_timeout(TimedOut)

    @saga.on_timeout(TimedOut)
    def timed_out(state: Job, event: TimedOut, ctx: SagaContext) -> None:
        state.status = "timed out"

    async with Shop(memory_url(), MemorySagaStore(), saga) as shop:
        await shop.app.publish(Started(job_id="a"), key="a")
        await shop.app.publish(Started(job_id="b"), key="b")
        await shop.app.publish(Progressed(job_id="b"), key="b")
        # a's first timeout, replaced in the step that scheduled it, was never sent;
        # b's was, before Progressed cancelled it: it arrives, and is ignored.
        assert await until(lambda: len(shop.sent("TimedOut")) == 2, 5)
        assert await until(lambda: shop.app.idle, 5)
        await asyncio.sleep(0.2)
        a, b = await shop.runner.get("a"), await shop.runner.get("b")
        assert a is not None and b is not None
        assert a.state.status == "timed out" and a.version == 2  # the second timeout only
        assert b.state.status == "new" and b.version == 2 and not b.completed


async def test_an_instance_is_found_by_correlation_id_by_default(
    memory_url: Callable[[], str],
) -> None:
    saga = Saga("chain", Job)

    @saga.starts(Started)
    def started(state: Job, event: Started, ctx: SagaContext) -> DoWork:
        return DoWork(job_id=event.job_id, step=1)

    @saga.on(Progressed)
    def progressed(state: Job, event: Progressed, ctx: SagaContext) -> None:
        state.done += 1
        ctx.complete()

    url = memory_url()
    worker = routed(App("worker", broker=url))

    @worker.subscribe("commands")
    async def work(command: DoWork) -> Progressed:
        return Progressed(job_id="not the key")  # derived: carries the correlationid

    async with Shop(url, MemorySagaStore(), saga) as shop, worker:
        started = await shop.app.publish(Started(job_id="x"), key="x")
        await shop.app.publish(Progressed(job_id="x"), key="x")  # a root of its own: no instance
        assert await until(lambda: shop.app.idle and worker.idle, 5)
        await asyncio.sleep(0.2)
        snapshot = await shop.runner.get(started.id)
        assert snapshot is not None
        assert snapshot.completed and snapshot.state.done == 1


# -- redelivery and concurrency -----------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_a_redelivered_event_changes_the_state_once_and_sends_the_same_commands(
    kind: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    failures = {"left": 1}
    scheduled: list[tuple[str, float | None]] = []

    def flaky(next_publish: PublishFn) -> PublishFn:
        async def publish(outgoing: Outgoing) -> None:
            scheduled.extend(
                (e.id, outgoing.deliver_at) for e in outgoing.events if e.type == "TimedOut"
            )
            if outgoing.topic == "commands" and failures["left"]:
                failures["left"] -= 1
                raise ConnectionError("the broker went away after the state was saved")
            await next_publish(outgoing)

        return publish

    async with store_of(kind, tmp_path) as store:
        shop = Shop(memory_url(), store, job_saga(), retry=RetryPolicy(initial_delay=0.01))
        shop.app.add_publish_middleware(flaky)
        async with shop:
            started = await shop.app.publish(Started(job_id="r", steps=3), key="r")
            assert await until(lambda: len(shop.sent("DoWork")) == 1, 5)
            assert failures["left"] == 0  # the first send failed: the event was redelivered
            # The same event again (a producer's duplicate): same commands, same ids.
            await shop.app.publish(started, topic="jobs")
            assert await until(lambda: len(shop.sent("DoWork")) == 2, 5)
            first, again = shop.sent("DoWork")
            assert first.id == again.id and first.data == again.data
            snapshot = await shop.runner.get("r")
            assert snapshot is not None
            assert snapshot.version == 1  # one transition for three deliveries
            # The timeout was scheduled at each delivery: the same event, for the same time.
            assert len(scheduled) == 3 and len(set(scheduled)) == 1
            stats = shop.app.stats()["jobs.job"]
            assert stats.retried == 1


@pytest.mark.parametrize("kind", STORES)
async def test_concurrent_events_of_one_saga_apply_once_each(
    kind: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    """Two apps (two groups) handle every event of one instance at once: each event
    changes the state once; the losers of each race retry on the winner's state."""
    steps = 12
    url = memory_url()
    retry = RetryPolicy(max_attempts=50, initial_delay=0.001, max_delay=0.01)
    async with store_of(kind, tmp_path) as store:
        saga = job_saga(pause=0.02)
        apps = [routed(App(f"jobs{i}", broker=url)) for i in range(2)]
        runners = [saga.install(app, store, retry=retry) for app in apps]
        for app in apps:
            await app.start()
        try:
            await apps[0].publish(Started(job_id="c", steps=steps), key="c")
            assert await until_async(lambda: has_instance(runners[0], "c"), 5)
            for _ in range(steps):
                await apps[0].publish(Progressed(job_id="c"), key="c")
            assert await until_async(lambda: has_completed(runners[0], "c"), 30)
            assert await until(lambda: all(a.idle for a in apps), 10)
            snapshot = await runners[0].get("c")
            assert snapshot is not None
            assert snapshot.state.done == steps and snapshot.completed
            assert snapshot.version == steps + 1
            conflicts = sum(s.retried for a in apps for s in a.stats().values())
            assert conflicts > 0  # the races happened, and were lost cleanly
        finally:
            for app in apps:
                await app.stop()


# -- the SQL store across restarts ---------------------------------------------------------


async def test_instances_outlive_the_app_in_a_sqlite_file(
    tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    url, database = memory_url(), f"sqlite:///{tmp_path / 'sagas.db'}"
    first = routed(App("jobs", broker=url))
    runner = job_saga().install(first, database)  # a URL: the app opens and closes the store
    async with first:
        await first.publish(Started(job_id="p", steps=2), key="p")
        await first.publish(Progressed(job_id="p"), key="p")
        assert await until_async(lambda: progressed(runner, "p", 1), 5)
    second = routed(App("jobs", broker=url))
    runner = job_saga().install(second, database)
    async with second:
        assert await progressed(runner, "p", 1)  # read back from the file
        await second.publish(Progressed(job_id="p"), key="p")
        assert await until_async(lambda: has_completed(runner, "p"), 5)


async def progressed(runner: SagaRunner[Job], saga_id: str, done: int) -> bool:
    snapshot = await runner.get(saga_id)
    return snapshot is not None and snapshot.state.done == done


async def test_an_unreadable_document_is_a_storage_error(memory_url: Callable[[], str]) -> None:
    store = MemorySagaStore()
    await store.save("job", "bad", "{not json", False, 0)
    runner = job_saga().install(routed(App("jobs", broker=memory_url())), store)
    with pytest.raises(StorageError, match="cannot be read"):
        await runner.get("bad")


# -- declaring a saga wrongly ----------------------------------------------------------------


def test_bad_declarations_are_refused_with_the_reason(memory_url: Callable[[], str]) -> None:
    @dataclasses.dataclass
    class NoDefaults:
        order_id: str

    with pytest.raises(ConfigurationError, match="needs a default"):
        Saga("s", NoDefaults)
    with pytest.raises(ConfigurationError, match="pydantic model or a dataclass"):
        Saga("s", dict)
    with pytest.raises(ConfigurationError, match="non-empty name"):
        Saga("", Job)
    saga = job_saga()
    with pytest.raises(ConfigurationError, match="already has a step"):
        saga.on(Started)(lambda s, e, c: None)
    with pytest.raises(ConfigurationError, match="takes no key"):
        saga.add_step(TimedOut, lambda s, e, c: None, kind="timeout", key=str)
    with pytest.raises(ConfigurationError, match="no topic in app"):
        saga.install(App("bare", broker=memory_url()), MemorySagaStore())
    with pytest.raises(ConfigurationError, match="no steps"):
        Saga("empty", Job).install(App("bare", broker=memory_url()), MemorySagaStore())
    with pytest.raises(ConfigurationError, match="postgresql:// or sqlite:///"):
        SqlSagaStore("mysql://db")


async def test_a_timeout_of_an_undeclared_type_is_refused(memory_url: Callable[[], str]) -> None:
    saga = Saga("job", Job)
    errors: list[BaseException] = []

    @saga.starts(Started, key=lambda e: e.job_id)
    def started(state: Job, event: Started, ctx: SagaContext) -> None:
        try:
            ctx.timeout(1, Undo(job_id=event.job_id, reason="?"))
        except ConfigurationError as exc:
            errors.append(exc)
        try:
            ctx.emit(ctx.event)
        except ConfigurationError as exc:
            errors.append(exc)

    app = routed(App("jobs", broker=memory_url()))
    saga.install(app, MemorySagaStore())
    async with app:
        await app.publish(Started(job_id="t"), key="t")
        assert await until(lambda: len(errors) == 2, 5)
    assert "not a timeout of this saga" in str(errors[0])
    assert "sends payloads, not Events" in str(errors[1])
