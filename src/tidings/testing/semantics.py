"""The App-level rules of SEMANTICS.md, tested on any broker.

Mixed into :class:`~tidings.testing.conformance.BrokerConformance`, so every
adapter runs them: outcomes and follow-ups, retries and ordering under retry,
dead letters, the three delivery guarantees, stopping, and flow control.
Each test builds apps on clients made by the suite's ``broker_factory``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tidings.app import App
from tidings.broker import Broker, Message
from tidings.context import Context
from tidings.deadletter import DeadLetter
from tidings.errors import Retry
from tidings.event import Event
from tidings.retry import RetryPolicy
from tidings.testing._fetching import collect, quiet
from tidings.testing.request_reply import RequestReplySemantics

__all__ = ["AppSemantics"]

BrokerFactory = Callable[[], Broker]
FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class AppSemantics(RequestReplySemantics):
    """App-level semantics; needs the fixtures of BrokerConformance."""

    patience: float = 10.0

    def _app(self, broker_factory: BrokerFactory, name: str = "semantics") -> App:
        return App(name, broker=broker_factory())

    # -- outcomes ---------------------------------------------------------------------

    async def test_follow_ups_are_published_with_causation(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        source, target = names("in"), names("out")
        app = self._app(broker_factory)
        app.route("Answered", target)

        @app.subscribe(source, group=names("g"))
        async def answer(data: dict[str, Any]) -> Event:
            return app.event({"n": data["n"]}, type="Answered")

        reader = await (await open_broker()).subscribe([target], names("reader"))
        async with app:
            asked = await app.publish({"n": 1}, topic=source, type="Asked")
            (d,) = await collect(reader, 1, timeout=self.patience)
        answered = app.codec.decode(d.value, d.headers)
        assert answered.type == "Answered"
        assert answered.data == {"n": 1}
        assert asked.type == "Asked"

    async def test_dead_letter_after_max_attempts(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        topic = names("dlq")
        app = self._app(broker_factory)
        attempts: list[int] = []

        async def always_fails(data: dict[str, Any], ctx: Context) -> None:
            attempts.append(ctx.attempt)
            raise RuntimeError("boom")

        app.add_subscription(always_fails, topic, group=names("g"), retry=FAST)
        dlq = await (await open_broker()).subscribe([topic + ".dlq"], names("dlq-reader"))
        async with app:
            published = await app.publish({"x": 1}, topic=topic, type="Boom", key="k")
            (d,) = await collect(dlq, 1, timeout=self.patience * 2)
            await asyncio.sleep(0.2)
        letter = DeadLetter.from_message(Message(d.value, d.headers, d.key))
        assert attempts == [1, 2, 3]
        assert letter.attempts == 3
        assert letter.error_type == "builtins.RuntimeError"
        assert letter.error_message == "boom"
        assert letter.origin_topic == topic
        assert letter.first_failure <= letter.last_failure
        assert letter.event(app.codec).id == published.id
        assert await quiet(dlq) == []

    async def test_poison_message_is_dead_lettered_at_once(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        topic = names("poison")
        app = self._app(broker_factory)
        handled: list[int] = []

        @app.subscribe(topic, group=names("g"), retry=FAST)
        async def handle(data: dict[str, Any]) -> None:
            handled.append(data["n"])

        producer = await open_broker()
        dlq = await producer.subscribe([topic + ".dlq"], names("dlq-reader"))
        async with app:
            await producer.publish(topic, [Message(b"\xff not an event")])
            await app.publish({"n": 1}, topic=topic, type="Fine")
            (d,) = await collect(dlq, 1, timeout=self.patience)
            await eventually(lambda: handled == [1], self.patience, "the good event")
        assert d.value == b"\xff not an event"
        assert d.headers["tidings-attempts"] == "1"
        assert d.headers["tidings-error-type"] == "tidings.errors.DecodeError"

    # -- ordering under retry --------------------------------------------------------------

    async def test_retry_holds_back_only_later_events_of_its_key(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("hold")
        app = self._app(broker_factory)
        log: list[str] = []
        policy = RetryPolicy(initial_delay=0.6, jitter="none")

        @app.subscribe(topic, group=names("g"), retry=policy)
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            log.append(f"{data['id']}#{ctx.attempt}")
            if data["id"] == "a1" and ctx.attempt == 1:
                raise RuntimeError("retry me")

        async with app:
            for ident, key in (("a1", "a"), ("a2", "a"), ("b1", "b")):
                await app.publish({"id": ident}, topic=topic, type="T", key=key)
            await eventually(lambda: len(log) >= 2, self.patience, "a1 and b1")
            await asyncio.sleep(0.1)
            assert sorted(log) == ["a1#1", "b1#1"], "b flows while a waits; a2 waits"
            await eventually(lambda: len(log) == 4, self.patience, "the retry and a2")
        assert log[2:] == ["a1#2", "a2#1"]

    async def test_a_rebalance_during_retry_holds_strands_no_key(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        """A member holding events behind retries loses their partitions to a newcomer:
        every event is still handled once in key order, and both members go idle."""
        topic, group = names("moved"), names("g")
        handled: list[tuple[str, int]] = []
        keys = [f"k{i}" for i in range(8)]

        def member(name: str) -> App:
            app = self._app(broker_factory, name)

            @app.subscribe(topic, group=group, retry=FAST)
            async def handle(data: dict[str, Any], ctx: Context) -> None:
                if data["n"] == 1 and ctx.attempt == 1:
                    raise Retry(delay=0.5)
                handled.append((data["key"], data["n"]))

            return app

        first, second = member("first"), member("second")
        async with first:
            await first.publish_batch(
                [first.event({"key": k, "n": n}, type="T", key=k) for n in (1, 2) for k in keys],
                topic=topic,
            )
            await eventually(
                lambda: sum(s.retried for s in first.stats().values()) == len(keys),
                self.patience,
                "every first event failed once",
            )
            async with second:
                await eventually(
                    lambda: len(handled) == 2 * len(keys), self.patience * 2, "every event"
                )
                await eventually(
                    lambda: first.idle and second.idle, self.patience, "both members idle"
                )
        for key in keys:
            assert [n for k, n in handled if k == key] == [1, 2]

    # -- delays: the same rule on every broker, emulated where the broker has none ---------

    async def test_delayed_publish_is_never_early(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("later")
        app = self._app(broker_factory)
        seen: list[tuple[str, float]] = []

        @app.subscribe(topic, group=names("g"))
        async def handle(data: dict[str, Any]) -> None:
            seen.append((data["n"], time.monotonic()))

        async with app:
            published = time.monotonic()
            await app.publish({"n": "later"}, topic=topic, type="T", key="a", delay=0.6)
            await app.publish({"n": "now"}, topic=topic, type="T", key="a")
            await eventually(lambda: len(seen) == 2, self.patience, "both events")
        assert [n for n, _ in seen] == ["now", "later"], "a delayed event does not hold its key"
        assert seen[1][1] - published >= 0.55

    async def test_a_requested_retry_delay_is_honoured(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("retrydelay")
        app = self._app(broker_factory)
        attempts: list[float] = []

        @app.subscribe(topic, group=names("g"))
        async def handle(data: dict[str, Any]) -> None:
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                raise Retry(delay=0.5)

        async with app:
            await app.publish({"n": 1}, topic=topic, type="T")
            await eventually(lambda: len(attempts) == 2, self.patience, "the retry")
            await eventually(lambda: app.idle, self.patience, "idle")
        assert attempts[1] - attempts[0] >= 0.45

    # -- guarantees -----------------------------------------------------------------------

    async def test_at_most_once_failure_is_not_retried(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("amo")
        app = self._app(broker_factory)
        calls: list[int] = []

        @app.subscribe(topic, group=names("g"), delivery="at_most_once", retry=FAST)
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            calls.append(ctx.attempt)
            raise RuntimeError("dropped")

        async with app:
            await app.publish({"n": 1}, topic=topic, type="T")
            await eventually(lambda: bool(calls), self.patience, "the handling")
            await asyncio.sleep(0.3)
        assert calls == [1]

    async def test_exactly_once_follow_ups_commit_once(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        probe = broker_factory()
        if not probe.capabilities.exactly_once:
            pytest.skip(f"{type(probe).__name__} does not declare capability 'exactly_once'")
        source, target = names("eo-in"), names("eo-out")
        app = self._app(broker_factory)
        app.route("Counted", target)

        @app.subscribe(source, group=names("g"), delivery="exactly_once")
        async def count(data: dict[str, Any]) -> Event:
            return app.event(data, type="Counted")

        reader = await (await open_broker()).subscribe([target], names("reader"))
        async with app:
            event = await app.publish({"n": 7}, topic=source, type="T")
            await app.publish(event, topic=source)  # the same (source, id): a duplicate
            (d,) = await collect(reader, 1, timeout=self.patience)
            assert await quiet(reader, 0.5) == []
        assert app.codec.decode(d.value, d.headers).data == {"n": 7}

    async def test_attempt_count_survives_a_restart(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        probe = broker_factory()
        if not probe.capabilities.persistent:
            pytest.skip(f"{type(probe).__name__} does not declare capability 'persistent'")
        topic, group = names("restart"), names("g")
        attempts: list[int] = []

        def make() -> App:
            app = self._app(broker_factory)

            policy = RetryPolicy(initial_delay=0.5, jitter="none")

            @app.subscribe(topic, group=group, retry=policy)
            async def handle(data: dict[str, Any], ctx: Context) -> None:
                attempts.append(ctx.attempt)
                if ctx.attempt == 1:
                    raise RuntimeError("fail once")

            return app

        async with make() as first:
            await first.publish({"n": 1}, topic=topic, type="T")
            await eventually(lambda: attempts == [1], self.patience, "the first attempt")
            await asyncio.sleep(0.1)
        async with make():
            await eventually(lambda: len(attempts) == 2, self.patience, "the retry")
        assert attempts == [1, 2]

    # -- stopping, flow control ---------------------------------------------------------------

    async def test_graceful_stop_lets_running_handlers_finish_and_ack(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic, group = names("drain"), names("g")
        started = asyncio.Event()
        finished: list[int] = []
        first = self._app(broker_factory, "first")

        @first.subscribe(topic, group=group)
        async def slow(data: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(0.3)
            finished.append(data["n"])

        await first.start()
        await first.publish({"n": 1}, topic=topic, type="T")
        await asyncio.wait_for(started.wait(), self.patience)
        await first.stop()
        assert finished == [1]
        second = self._app(broker_factory, "second")
        again: list[int] = []

        @second.subscribe(topic, group=group)
        async def handle(data: dict[str, Any]) -> None:
            again.append(data["n"])

        async with second:
            await asyncio.sleep(0.5)
        assert again == [], "an event handled during the drain was acked"

    async def test_stop_timeout_leaves_the_event_for_redelivery(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic, group = names("stuck"), names("g")
        started = asyncio.Event()
        first = self._app(broker_factory, "first")

        @first.subscribe(topic, group=group)
        async def stuck(data: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(60)

        await first.start()
        await first.publish({"n": 1}, topic=topic, type="T")
        await asyncio.wait_for(started.wait(), self.patience)
        await first.stop(timeout=0.1)
        second = self._app(broker_factory, "second")
        attempts: list[int] = []

        @second.subscribe(topic, group=group)
        async def handle(data: dict[str, Any], ctx: Context) -> None:
            attempts.append(ctx.attempt)

        async with second:
            await eventually(lambda: bool(attempts), self.patience * 2, "the redelivery")
        assert attempts[0] >= 2

    async def test_prefetch_bounds_events_taken(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("prefetch")
        app = self._app(broker_factory)
        release = asyncio.Event()

        @app.subscribe(topic, group=names("g"), prefetch=5, concurrency=5, ordering="none")
        async def slow(data: dict[str, Any]) -> None:
            await release.wait()

        async with app:
            await app.publish_batch([app.event({"i": i}, type="T") for i in range(50)], topic=topic)
            await eventually(
                lambda: app.stats()[slow_name(app)].received >= 5, self.patience, "intake"
            )
            await asyncio.sleep(0.2)
            assert app.stats()[slow_name(app)].received == 5
            release.set()
            await eventually(
                lambda: app.stats()[slow_name(app)].handled == 50, self.patience, "all handled"
            )


def slow_name(app: App) -> str:
    (name,) = app.stats()
    return name
