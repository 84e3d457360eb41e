"""Regression tests for the bugs the core refit fixed (each failed on the old code)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tidings import App, Context, Event, Reject, Retry
from tidings.broker import Message
from tidings.brokers._partitioning import partition_for
from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.errors import ConfigurationError, SubscriptionFailedError
from tidings.exactly_once import BrokerTransaction
from tidings.retry import RetryPolicy
from tidings.testing.semantics import eventually

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


class FailingDeadLetters(MemoryBroker):
    """A memory broker whose dead-letter writes fail ``failures`` times (an outage)."""

    def __init__(self, hub: MemoryHub, failures: int) -> None:
        super().__init__(hub)
        self.failures = failures
        self.dlq_publishes = 0

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        if topic.endswith(".dlq"):
            self.dlq_publishes += 1
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
        await super().publish(topic, messages)


def dead_letters(hub: MemoryHub, topic: str) -> list[Message]:
    return [message for _, _, message in hub.records(topic + ".dlq")]


# -- bug 1: a key stranded by a rebalance ----------------------------------------------


async def test_a_rebalance_during_a_retry_hold_strands_no_key() -> None:
    hub = MemoryHub(default_partitions=2)
    key = next(f"k{i}" for i in range(100) if partition_for(f"k{i}", 2) == 1)
    handled: list[tuple[str, str, int]] = []

    def member(name: str) -> App:
        app = App(name, broker=MemoryBroker(hub))

        @app.subscribe("t", group="g", retry=FAST)
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            if data["n"] == 1 and ctx.attempt == 1:
                raise Retry(delay=0.3)
            handled.append((name, data["n"], ctx.attempt))

        return app

    first, second = member("first"), member("second")
    async with first:
        await first.publish_batch(
            [first.event({"n": n}, type="T", key=key) for n in (1, 2)], topic="t"
        )
        await eventually(lambda: first.stats()["first.handle"].retried == 1, 5, "e1 failed")
        assert not first.idle  # e2 is held behind e1's retry
        async with second:  # takes partition 1, the key's, away from the first member
            await eventually(lambda: len(handled) == 2, 5, "both events handled")
            await eventually(lambda: first.idle and second.idle, 5, "both members idle")
    assert [n for _, n, _ in handled] == [1, 2]
    assert {name for name, _, _ in handled} == {"second"}


# -- bug 2: one broker error silently killed a subscription ------------------------------


async def test_a_transient_broker_error_restarts_the_subscription() -> None:
    hub = MemoryHub()
    broker = FailingDeadLetters(hub, failures=1)
    app = App("svc", broker=broker)
    handled: list[str] = []

    @app.subscribe("t", retry=FAST)
    async def handle(data: dict[str, Any]) -> None:
        if data["n"] == "bad":
            raise Reject("bad input")
        handled.append(data["n"])

    async with app:
        await app.publish({"n": "bad"}, type="T", topic="t", key="a")
        await app.publish({"n": "good"}, type="T", topic="t", key="b")
        await eventually(lambda: handled == ["good"], 5, "the next event handled")
        await eventually(lambda: len(dead_letters(hub, "t")) == 1, 5, "the dead letter stored")
        await eventually(lambda: app.idle, 5, "idle")
        assert app.health.status == "running"
        assert app.stats()["svc.handle"].restarts == 1


async def test_a_subscription_that_cannot_recover_fails_the_app_loudly() -> None:
    from tidings.supervision import Supervision

    hub = MemoryHub()
    app = App(
        "svc",
        broker=FailingDeadLetters(hub, failures=1000),
        supervision=Supervision(max_restarts=2, initial_backoff=0.01),
    )

    @app.subscribe("t")
    async def handle(data: dict[str, Any]) -> None:
        raise Reject("always")

    await hub_publish(hub, "t")
    with pytest.raises(SubscriptionFailedError, match=r"svc\.handle") as failed:
        await asyncio.wait_for(app.serve(), 10)
    assert isinstance(failed.value.cause, OSError)
    assert app.health.status == "failed"
    assert "OSError" in app.health.errors["svc.handle"]
    assert not app.idle


async def hub_publish(hub: MemoryHub, topic: str) -> None:
    producer = App("producer", broker=MemoryBroker(hub))
    await producer.publish({"n": 1}, type="T", topic=topic)


# -- bug 3: batch handlers ------------------------------------------------------------


def test_exactly_once_batch_handlers_are_refused_at_subscribe_time() -> None:
    app = App("svc", broker="memory://")
    with pytest.raises(ConfigurationError, match="batch handler cannot be exactly-once"):

        @app.subscribe("t", delivery="exactly_once", batch_size=10)
        async def many(items: list[dict[str, Any]]) -> None: ...


async def test_a_failed_batch_decides_each_event_by_its_own_attempts() -> None:
    hub = MemoryHub(default_partitions=1)
    broker = MemoryBroker(hub)
    await broker.connect()
    await hub_publish(hub, "t")  # the poison event, n=1
    early = await broker.subscribe(["t"], "g")
    (poison,) = await early.fetch(10, 1.0)
    await poison.nack()  # its next delivery is attempt 2
    await early.close()
    app = App("svc", broker=MemoryBroker(hub))
    handled: list[int] = []

    @app.subscribe("t", group="g", batch_size=10, retry=RetryPolicy(2, 0.01, max_delay=0.01))
    async def many(items: list[dict[str, Any]]) -> None:
        if any(item["n"] == 1 for item in items):
            raise RuntimeError("poison in the batch")
        handled.extend(item["n"] for item in items)

    await app.publish({"n": 2}, type="T", topic="t", key="other")
    async with app:
        await eventually(lambda: handled == [2], 5, "the healthy event handled")
    dead = dead_letters(hub, "t")
    assert len(dead) == 1 and dead[0].headers["tidings-attempts"] == "2"


async def test_a_batch_keeps_later_events_of_a_key_behind_its_retry() -> None:
    app = App("svc", broker=MemoryBroker(MemoryHub()))
    handled: list[int] = []
    failed = asyncio.Event()

    @app.subscribe("t", batch_size=10, batch_timeout=0.01, retry=FAST)
    async def many(items: list[dict[str, Any]], ctx: Context) -> None:
        if any(item["n"] == 1 for item in items) and not failed.is_set():
            failed.set()
            raise Retry(delay=0.3)
        handled.extend(item["n"] for item in items)

    async with app:
        await app.publish({"n": 1}, type="T", topic="t", key="k")
        await asyncio.wait_for(failed.wait(), 5)
        await app.publish({"n": 2}, type="T", topic="t", key="k")
        await eventually(lambda: len(handled) == 2, 5, "both handled")
    assert handled == [1, 2]


# -- bug 4: delayed publish on a broker that cannot schedule ------------------------------


async def test_delayed_publish_is_never_early_on_a_broker_without_delays() -> None:
    app = App("svc", broker=MemoryBroker(scheduled=False))
    seen: list[float] = []

    @app.subscribe("t")
    async def handle(data: dict[str, Any]) -> None:
        seen.append(time.monotonic())

    async with app:
        published = time.monotonic()
        await app.publish({"n": 1}, type="T", topic="t", delay=0.5)
        await eventually(lambda: bool(seen), 5, "the delayed event")
    assert seen[0] - published >= 0.45


# -- bug 5: Context.emit(topic=...) ------------------------------------------------------


async def test_emit_with_a_topic_publishes_there() -> None:
    hub = MemoryHub()
    app = App("svc", broker=MemoryBroker(hub))

    @app.subscribe("t")
    async def handle(event: Event, ctx: Context) -> None:
        ctx.emit({"echo": True}, topic="elsewhere", type="Echoed", subject="s-1")

    async with app:
        await app.publish({"n": 1}, type="T", topic="t")
        await eventually(lambda: bool(hub.records("elsewhere")), 5, "the emitted event")
    (_, _, message) = hub.records("elsewhere")[0]
    echoed = app.codec.decode(message.value, message.headers)
    assert echoed.type == "Echoed" and echoed.subject == "s-1"


# -- bug 6: dead-letter ordering ---------------------------------------------------------


async def test_a_failed_dead_letter_write_leaves_the_event_unacked() -> None:
    hub = MemoryHub(default_partitions=1)
    from tidings.supervision import Supervision

    app = App(
        "svc",
        broker=FailingDeadLetters(hub, failures=1),
        supervision=Supervision(initial_backoff=0.3),
    )

    @app.subscribe("t", group="g")
    async def handle(data: dict[str, Any]) -> None:
        raise Reject("never")

    async with app:
        await app.publish({"n": 1}, type="T", topic="t")
        await eventually(lambda: app.health.status == "degraded", 5, "the restart")
        state = hub.groups[("g", "t")]
        assert state.marks[0].committed == 0  # not acked while the DLQ write failed
        assert dead_letters(hub, "t") == []
        await eventually(lambda: len(dead_letters(hub, "t")) == 1, 5, "the dead letter")
        await eventually(lambda: state.marks[0].committed == 1, 5, "the ack after it")


class FlakyCommit(MemoryBroker):
    """Exactly-once commits fail once; every publish is counted by topic."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.commit_failures = 1
        self.published: list[str] = []

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        self.published.append(topic)
        await super().publish(topic, messages)

    async def commit(
        self, delivery: Any, outputs: Sequence[tuple[str, Message]], dedup_key: str | None = None
    ) -> bool:
        if self.commit_failures and any(t.endswith(".dlq") for t, _ in outputs):
            self.commit_failures -= 1
            raise OSError("commit lost")
        return await super().commit(delivery, outputs, dedup_key)


async def test_under_exactly_once_the_dead_letter_and_the_ack_are_one_commit() -> None:
    hub = MemoryHub(default_partitions=1)
    broker = FlakyCommit(hub)
    app = App("svc", broker=broker)

    @app.subscribe("t", group="g", delivery="exactly_once")
    async def handle(data: dict[str, Any]) -> None:
        raise Reject("never")

    async with app:
        await app.publish({"n": 1}, type="T", topic="t")
        await eventually(lambda: len(dead_letters(hub, "t")) == 1, 5, "the dead letter")
        await eventually(lambda: app.idle, 5, "idle")
    assert broker.commit_failures == 0  # the first commit failed ...
    assert not any(t.endswith(".dlq") for t in broker.published)  # ... and was never split
    assert hub.groups[("g", "t")].marks[0].committed == 1


async def test_revoking_an_event_that_had_not_started_frees_its_key() -> None:
    hub = MemoryHub(default_partitions=2)
    stays = [f"a{i}" for i in range(100) if partition_for(f"a{i}", 2) == 0][:2]
    moves = next(f"b{i}" for i in range(100) if partition_for(f"b{i}", 2) == 1)
    release = asyncio.Event()
    started: list[str] = []
    handled: list[tuple[str, str]] = []

    def member(name: str) -> App:
        app = App(name, broker=MemoryBroker(hub))

        @app.subscribe("t", group="g", concurrency=2)
        async def handle(data: dict[str, Any]) -> None:
            started.append(data["n"])
            if data["n"].startswith("busy"):
                await release.wait()  # both workers busy: b-1 stays ready, not started
            handled.append((name, data["n"]))

        return app

    first, second = member("first"), member("second")
    async with first:
        for n, key in enumerate(stays):
            await first.publish({"n": f"busy-{n}"}, type="T", topic="t", key=key)
        await eventually(lambda: len(started) == 2, 5, "both workers busy")
        for n in ("b-1", "b-2"):
            await first.publish({"n": n}, type="T", topic="t", key=moves)
        await eventually(lambda: first.stats()["first.handle"].received == 4, 5, "intake")
        async with second:  # takes partition 1 (b-1 ready, b-2 held) from the first
            await eventually(lambda: len(handled) == 2, 5, "b-1 and b-2 on the second")
        # The second left: partition 1 comes back to the first member.
        release.set()
        await first.publish({"n": "b-3"}, type="T", topic="t", key=moves)
        await eventually(lambda: len(handled) == 5, 5, "the rest on the first")
        await eventually(lambda: first.idle, 5, "the first member idle")
    assert handled[:2] == [("second", "b-1"), ("second", "b-2")]
    assert sorted(handled[2:]) == [("first", "b-3"), ("first", "busy-0"), ("first", "busy-1")]


async def test_running_and_held_events_are_extended_while_the_handler_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidings.brokers.memory._group import MemoryDelivery

    extended: list[str] = []
    monkeypatch.setattr(MemoryDelivery, "_on_extend", lambda self: extended.append(self.id))
    app = App("svc", broker=MemoryBroker(MemoryHub()))
    done: list[int] = []

    @app.subscribe("t", ack_wait=0.2)
    async def slow(data: dict[str, Any]) -> None:
        await asyncio.sleep(0.5)
        done.append(data["n"])

    async with app:
        await app.publish_batch([app.event({"n": n}, type="T", key="k") for n in (1, 2)], topic="t")
        await eventually(lambda: len(done) == 2, 5, "both handled")
    assert len(set(extended)) == 2  # the running one, and the one held behind its key


# -- found in review: restarts, stops and failures with work in flight -------------------


async def test_a_restart_never_runs_two_events_of_a_key_at_once() -> None:
    hub = MemoryHub(default_partitions=1)
    app = App("svc", broker=FailingDeadLetters(hub, failures=1))
    running: dict[str, int] = {}
    overlaps: list[str] = []
    seen: list[tuple[str, int]] = []

    @app.subscribe("t", group="g", concurrency=2)
    async def handle(data: dict[str, Any], ctx: Context) -> None:
        key = ctx.event.partitionkey or ""
        if data["n"] == "bad":
            raise Reject("bad")
        running[key] = running.get(key, 0) + 1
        if running[key] > 1:
            overlaps.append(key)
        seen.append((data["n"], ctx.attempt))
        await asyncio.sleep({"e1": 0.3, "e2": 1.0, "e3": 1.0, "e4": 1.0}[data["n"]])
        running[key] -= 1

    async with app:
        batch = [("e1", "a"), ("e2", "b"), ("bad", "x"), ("e3", "c"), ("e4", "d")]
        events = [app.event({"n": n}, type="T", key=k) for n, k in batch]
        await app.publish_batch(events, topic="t")
        await asyncio.sleep(3)  # the restart happens while e2 and e3 still run
        await eventually(lambda: app.idle, 10, "idle")
    assert {n for n, _ in seen} == {"e1", "e2", "e3", "e4"}
    assert app.stats()["svc.handle"].restarts == 1
    assert overlaps == []


class SlowTransaction(BrokerTransaction):
    """A commit with a database round trip; the first one fails when asked to."""

    def __init__(self, broker: MemoryBroker, fail_first: bool = False) -> None:
        super().__init__(broker)
        self.fail_first = fail_first

    async def commit(  # type: ignore[override]
        self, delivery: Any, event: Any, outputs: Sequence[tuple[str, Message]]
    ) -> bool:
        await asyncio.sleep(0.2)
        if self.fail_first:
            self.fail_first = False
            raise OSError("database down")
        return await super().commit(delivery, event, outputs)


async def test_a_commit_failing_after_its_event_was_revoked_holds_no_key() -> None:
    hub = MemoryHub(default_partitions=2)
    key = next(f"k{i}" for i in range(100) if partition_for(f"k{i}", 2) == 1)
    handled: list[tuple[str, int]] = []

    def member(name: str, fail_first: bool) -> App:
        broker = MemoryBroker(hub)
        app = App(name, broker=broker, exactly_once=SlowTransaction(broker, fail_first))

        @app.subscribe("t", group="g", delivery="exactly_once")
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            handled.append((name, ctx.attempt))

        return app

    first, second = member("first", True), member("second", False)
    async with first:
        await first.publish({"n": 1}, type="T", topic="t", key=key)
        await eventually(lambda: bool(handled), 5, "the first handling")
        async with second:  # takes the key's partition while the commit is in flight
            await eventually(lambda: ("second", 2) in handled, 5, "the second member's")
            await eventually(lambda: first.idle and second.idle, 5, "both idle")


async def test_a_graceful_stop_commits_a_handler_that_finishes_during_the_drain() -> None:
    hub = MemoryHub(default_partitions=1)
    broker = MemoryBroker(hub)
    app = App("svc", broker=broker, exactly_once=SlowTransaction(broker))
    started = asyncio.Event()

    @app.subscribe("t", group="g", delivery="exactly_once")
    async def handle(data: dict[str, Any], ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.2)
        ctx.emit({"x": 1}, type="Out", topic="out")

    await app.start()
    await app.publish({"n": 1}, type="T", topic="t")
    await asyncio.wait_for(started.wait(), 5)
    await app.stop(timeout=5)  # the handler, then its commit, finish well within it
    assert len(hub.records("out")) == 1
    assert hub.groups[("g", "t")].marks[0].committed == 1


async def test_a_failed_subscription_gives_its_events_back_to_the_group() -> None:
    from tidings.supervision import Supervision

    hub = MemoryHub(default_partitions=1)
    failing = App(
        "failing",
        broker=FailingDeadLetters(hub, failures=1000),
        supervision=Supervision(max_restarts=0),
    )
    healthy = App("healthy", broker=MemoryBroker(hub))
    handled: list[int] = []

    @failing.subscribe("t", group="g")
    async def reject(data: dict[str, Any]) -> None:
        raise Reject("never")

    @healthy.subscribe("t", group="g")
    async def handle(data: dict[str, Any]) -> None:
        handled.append(data["n"])

    async with failing:
        await failing.publish({"n": 1}, type="T", topic="t")
        await eventually(lambda: failing.health.status == "failed", 5, "the failure")
        async with healthy:  # the failed member left the group: the event is not stuck
            await eventually(lambda: handled == [1], 5, "the event on the healthy member")
