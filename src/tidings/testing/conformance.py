"""The broker conformance suite: one set of tests every adapter passes.

Subclass :class:`BrokerConformance` in a test module and give it a
``broker_factory`` fixture returning a callable that creates a new,
unconnected client of one shared backend (several clients stand for several
processes)::

    import pytest
    from tidings.brokers.memory import MemoryBroker, MemoryHub
    from tidings.testing.conformance import BrokerConformance

    class TestMemoryBroker(BrokerConformance):
        @pytest.fixture
        def broker_factory(self):
            hub = MemoryHub()
            return lambda: MemoryBroker(hub)

Tests needing a capability the broker does not declare are skipped with that
reason. Topic and group names are unique per test, so a persistent backend
can be shared across runs. Requires pytest and pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tidings.broker import (
    Broker,
    Delivery,
    Message,
    Provisioning,
    Seekable,
    SubscribeOptions,
    Subscription,
    Transactional,
)
from tidings.errors import ConnectionError as TidingsConnectionError
from tidings.errors import TidingsError
from tidings.inspection import Inspectable
from tidings.testing._fetching import collect, quiet
from tidings.testing.semantics import AppSemantics

__all__ = ["BrokerConformance", "collect"]

BrokerFactory = Callable[[], Broker]


def _messages(n: int, key: str | None = None, prefix: str = "m") -> list[Message]:
    return [Message(f"{prefix}{i}".encode(), {"n": str(i)}, key) for i in range(n)]


def _seekable(broker: Broker) -> Seekable:
    assert isinstance(broker, Seekable), "replay capability declared without seek()"
    return broker


def _transactional(broker: Broker) -> Transactional:
    assert isinstance(broker, Transactional), "exactly_once capability declared without commit()"
    return broker


class BrokerConformance(AppSemantics):
    """The suite. Subclass it and provide the ``broker_factory`` fixture.

    Broker-level tests are here; the App-level rules of SEMANTICS.md (retries,
    ordering under retry, dead letters, guarantees, stopping, flow control)
    come from :class:`~tidings.testing.semantics.AppSemantics`.
    """

    #: Seconds a delivery may take to show up; raise it for slow backends.
    patience: float = 10.0
    #: Seconds for a group to spread its partitions over a member that just joined.
    rebalance_delay: float = 0.0

    @pytest.fixture
    def broker_factory(self) -> BrokerFactory:  # pragma: no cover - overridden
        raise NotImplementedError("subclass BrokerConformance and define broker_factory")

    @pytest.fixture
    async def open_broker(self, broker_factory: BrokerFactory) -> AsyncIterator[Callable[[], Any]]:
        opened: list[Broker] = []

        async def open_one() -> Broker:
            broker = broker_factory()
            await broker.connect()
            opened.append(broker)
            return broker

        yield open_one
        for broker in opened:
            await broker.close()

    @pytest.fixture
    def names(self) -> Callable[[str], str]:
        run = uuid.uuid4().hex[:8]
        return lambda base: f"conf-{base}-{run}"

    @staticmethod
    def require(broker: Broker, *capabilities: str) -> None:
        for capability in capabilities:
            if not getattr(broker.capabilities, capability):
                pytest.skip(f"{type(broker).__name__} does not declare capability {capability!r}")

    # -- basics ------------------------------------------------------------------

    async def test_round_trip(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("rt")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b'{"hello":1}', {"h1": "v1"}, "k1")])
        (d,) = await collect(sub, 1, timeout=self.patience)
        assert d.value == b'{"hello":1}'
        assert d.key == "k1"
        assert d.topic == topic
        assert d.attempt == 1
        if broker.capabilities.headers:
            assert d.headers.get("h1") == "v1"
        assert await quiet(sub) == []

    async def test_many_messages(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("many")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, _messages(2000))
        got = await collect(sub, 2000, timeout=self.patience * 3)
        assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(2000))

    async def test_large_fetches_skip_nothing(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("bigfetch")
        sub = await broker.subscribe([topic], names("g"))
        for start in range(0, 2500, 500):
            await broker.publish(topic, _messages(500, key="one", prefix=f"b{start}-"))
        got: list[Delivery] = []
        deadline = time.monotonic() + self.patience * 2
        while len(got) < 2500 and time.monotonic() < deadline:
            for delivery in await sub.fetch(5000, 1.0):
                got.append(delivery)
                await delivery.ack()
        expected = [f"b{start}-{i}".encode() for start in range(0, 2500, 500) for i in range(500)]
        assert [d.value for d in got] == expected
        assert await quiet(sub) == []

    async def test_many_topics(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topics = [names(f"t{i}") for i in range(12)]
        subs = [await broker.subscribe([t], names("g")) for t in topics]
        for i, topic in enumerate(topics):
            await broker.publish(topic, [Message(f"for-{i}".encode())])
        for i, sub in enumerate(subs):
            (d,) = await collect(sub, 1, timeout=self.patience)
            assert d.value == f"for-{i}".encode()
            assert d.topic == topics[i]

    async def test_subscription_to_several_topics(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        a, b = names("a"), names("b")
        sub = await broker.subscribe([a, b], names("g"))
        await broker.publish(a, [Message(b"from-a")])
        await broker.publish(b, [Message(b"from-b")])
        got = await collect(sub, 2, timeout=self.patience)
        assert {(d.topic, d.value) for d in got} == {(a, b"from-a"), (b, b"from-b")}

    async def test_headers_and_attributes_survive(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "headers")
        topic = names("hdr")
        sub = await broker.subscribe([topic], names("g"))
        headers = {"ce_id": "1", "ce_type": "x.y", "content-type": "application/json", "ü": "ö"}
        await broker.publish(topic, [Message(b"{}", headers, "key-1")])
        (d,) = await collect(sub, 1, timeout=self.patience)
        assert {k: d.headers[k] for k in headers} == headers
        assert d.key == "key-1"
        assert d.published_at == pytest.approx(time.time(), abs=60)

    async def test_large_payload(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        size = min(broker.capabilities.max_message_size or 1 << 20, 1 << 20) - 1024
        topic = names("big")
        sub = await broker.subscribe([topic], names("g"))
        value = bytes(range(256)) * (size // 256)
        await broker.publish(topic, [Message(value)])
        (d,) = await collect(sub, 1, timeout=self.patience)
        assert d.value == value

    async def test_concurrent_publishers(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("conc")
        sub = await broker.subscribe([topic], names("g"))

        async def producer(p: int) -> None:
            for i in range(50):
                await broker.publish(topic, [Message(f"{p}-{i}".encode(), key=f"p{p}")])

        await asyncio.gather(*(producer(p) for p in range(10)))
        got = await collect(sub, 500, timeout=self.patience * 2)
        assert len(got) == 500
        assert len({d.value for d in got}) == 500
        if broker.capabilities.ordered_per_key:
            per_key: dict[str | None, list[int]] = defaultdict(list)
            for d in got:
                per_key[d.key].append(int(d.value.decode().split("-")[1]))
            assert all(seq == sorted(seq) for seq in per_key.values())

    # -- groups ------------------------------------------------------------------

    async def test_fan_out_to_groups(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "consumer_groups")
        topic = names("fan")
        subs = [await broker.subscribe([topic], names(f"g{i}")) for i in range(3)]
        await broker.publish(topic, _messages(20))
        for sub in subs:
            got = await collect(sub, 20, timeout=self.patience)
            assert sorted(d.value for d in got) == sorted(f"m{i}".encode() for i in range(20))

    async def test_competing_consumers(self, open_broker: Any, names: Any) -> None:
        self.require(await open_broker(), "consumer_groups")
        topic, group = names("comp"), names("g")
        first = await (await open_broker()).subscribe([topic], group)
        second = await (await open_broker()).subscribe([topic], group)
        await asyncio.sleep(self.rebalance_delay)
        producer = await open_broker()
        await producer.publish(
            topic, [Message(f"m{i}".encode(), key=f"k{i % 16}") for i in range(200)]
        )
        got_first: list[Delivery] = []
        got_second: list[Delivery] = []
        deadline = time.monotonic() + self.patience
        while len(got_first) + len(got_second) < 200 and time.monotonic() < deadline:
            got_first += await collect(first, 200, timeout=0.2)
            got_second += await collect(second, 200, timeout=0.2)
        values = [d.value for d in got_first + got_second]
        assert len(values) == 200
        assert len(set(values)) == 200, "a message went to two members of one group"
        assert got_first and got_second, "one member received nothing"

    async def test_per_key_order(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "ordered_per_key")
        topic = names("order")
        sub = await broker.subscribe([topic], names("g"))
        messages = [
            Message(f"{k}:{i}".encode(), key=f"key{k}") for i in range(60) for k in range(5)
        ]
        for start in range(0, len(messages), 37):
            await broker.publish(topic, messages[start : start + 37])
        got = await collect(sub, 300, timeout=self.patience)
        per_key: dict[str, list[int]] = defaultdict(list)
        for d in got:
            k, i = d.value.decode().split(":")
            per_key[k].append(int(i))
        assert len(got) == 300
        assert all(seq == list(range(60)) for seq in per_key.values())

    async def test_restart_resumes_from_committed_position(
        self, open_broker: Any, names: Any
    ) -> None:
        producer = await open_broker()
        self.require(producer, "consumer_groups")
        topic, group = names("resume"), names("g")
        first = await (await open_broker()).subscribe([topic], group)
        await producer.publish(topic, _messages(10, key="one"))
        got = await collect(first, 5, timeout=self.patience)
        assert [d.value for d in got] == [f"m{i}".encode() for i in range(5)]
        await first.close()
        second = await (await open_broker()).subscribe([topic], group)
        rest = await collect(second, 5, timeout=self.patience)
        assert [d.value for d in rest] == [f"m{i}".encode() for i in range(5, 10)]
        assert await quiet(second) == []

    async def test_new_group_starting_at_latest(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("latest")
        await broker.publish(topic, [Message(b"old")])
        sub = await broker.subscribe([topic], names("g"), SubscribeOptions(start="latest"))
        await broker.publish(topic, [Message(b"new")])
        got = await collect(sub, 1, timeout=self.patience)
        assert [d.value for d in got] == [b"new"]
        assert await quiet(sub) == []

    # -- settlement ----------------------------------------------------------------

    async def test_nack_redelivers_with_next_attempt(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("nack")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"again")])
        (d,) = await collect(sub, 1, ack=False, timeout=self.patience)
        await d.nack()
        (again,) = await collect(sub, 1, timeout=self.patience)
        assert again.value == b"again"
        assert again.attempt == d.attempt + 1
        assert await quiet(sub) == []

    async def test_ack_and_nack_are_idempotent(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("idem")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"once")])
        (d,) = await collect(sub, 1, ack=False, timeout=self.patience)
        await d.ack()
        await d.ack()
        await d.nack()
        assert d.settled
        assert await quiet(sub) == []

    async def test_nack_with_delay_waits(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "delayed_redelivery")
        topic = names("nackdelay")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"later")])
        (d,) = await collect(sub, 1, ack=False, timeout=self.patience)
        nacked = time.monotonic()
        await d.nack(delay=0.5)
        (again,) = await collect(sub, 1, timeout=self.patience)
        assert time.monotonic() - nacked >= 0.45
        assert again.attempt == 2

    async def test_retry_does_not_block_other_keys(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "delayed_redelivery")
        topic = names("noblock")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"slow", key="a")])
        (d,) = await collect(sub, 1, ack=False, timeout=self.patience)
        await d.nack(delay=2.0)
        await broker.publish(topic, [Message(b"other", key="b")])
        started = time.monotonic()
        (other,) = await collect(sub, 1, timeout=self.patience)
        assert other.value == b"other"
        assert time.monotonic() - started < 1.5

    async def test_delivery_id_is_stable_across_redeliveries(
        self, open_broker: Any, names: Any
    ) -> None:
        broker = await open_broker()
        topic = names("ids")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"a", key="k"), Message(b"b", key="k")])
        first, second = await collect(sub, 2, ack=False, timeout=self.patience)
        assert first.id != second.id
        assert isinstance(first.position, str) and first.position
        await first.nack()
        await second.ack()
        (again,) = await collect(sub, 1, timeout=self.patience)
        assert again is not first
        assert again.id == first.id
        assert again.attempt == first.attempt + 1

    async def test_extend_keeps_an_unsettled_delivery_and_ignores_settled_ones(
        self, open_broker: Any, names: Any
    ) -> None:
        broker = await open_broker()
        topic = names("extend")
        sub = await broker.subscribe([topic], names("g"))
        await broker.publish(topic, [Message(b"long")])
        (d,) = await collect(sub, 1, ack=False, timeout=self.patience)
        await d.extend()
        assert not d.settled
        await d.ack()
        await d.extend()  # settled: nothing to extend, never an error
        assert await quiet(sub) == []

    async def test_group_less_reader_sees_what_is_published_while_open(
        self, open_broker: Any, names: Any
    ) -> None:
        broker = await open_broker()
        topic = names("reader")
        await broker.publish(topic, [Message(b"before")])
        member = await broker.subscribe([topic], names("g"))
        reader = await broker.subscribe([topic], None)
        await broker.publish(topic, [Message(b"after-1"), Message(b"after-2")])
        got = await collect(reader, 2, timeout=self.patience)
        assert sorted(d.value for d in got) == [b"after-1", b"after-2"]
        assert await quiet(reader) == []
        # The reader takes nothing away from the group.
        grouped = await collect(member, 3, timeout=self.patience)
        assert sorted(d.value for d in grouped) == [b"after-1", b"after-2", b"before"]
        await reader.close()

    async def test_revoked_deliveries_are_reported_and_redelivered_in_key_order(
        self, open_broker: Any, names: Any
    ) -> None:
        first_broker = await open_broker()
        self.require(first_broker, "consumer_groups", "key_affinity")
        topic, group = names("revoke"), names("g")
        revoked: list[Delivery] = []
        first = await first_broker.subscribe(
            [topic], group, SubscribeOptions(), lambda lost: revoked.extend(lost)
        )
        keys = [f"k{i}" for i in range(8)]
        await first_broker.publish(
            topic, [Message(f"{k}-{n}".encode(), key=k) for n in (1, 2) for k in keys]
        )
        held = await collect(first, 16, ack=False, timeout=self.patience)
        for d in held:
            if d.value.endswith(b"-1"):
                await d.nack(0.3)  # the first of each key waits for a retry ...
        # ... while the second stays unsettled, held behind it; then a member joins.
        second = await (await open_broker()).subscribe([topic], group)
        deadline = time.monotonic() + self.patience + self.rebalance_delay * 4
        got: list[Delivery] = []
        # Until both events of every key it lost came to the new member.
        while time.monotonic() < deadline and (
            not revoked or len(got) < 2 * len({d.key for d in revoked})
        ):
            got.extend(await collect(second, 1, timeout=0.2))
            await first.fetch(16, 0.05)  # keep the first member's partitions moving
        assert revoked, "the member that lost partitions was not told"
        assert all(d.settled for d in revoked)
        by_key: dict[str | None, list[bytes]] = defaultdict(list)
        for d in got:
            by_key[d.key].append(d.value)
        for d in revoked:
            assert by_key[d.key][:2] == [f"{d.key}-1".encode(), f"{d.key}-2".encode()]
        await revoked[0].ack()  # fenced: ignored, never an error

    async def test_inspection_reads_and_administers_without_joining(
        self, open_broker: Any, names: Any
    ) -> None:
        broker: Broker = await open_broker()
        if not isinstance(broker, Inspectable):
            pytest.skip(f"{type(broker).__name__} does not implement Inspectable")
        inspect: Inspectable = broker
        topic, group, archive = names("inspect"), names("g"), names("archive")
        if isinstance(broker, Provisioning):
            await broker.ensure_topic(topic, partitions=2)
        await broker.publish(topic, [Message(f"m{i}".encode(), key=f"k{i}") for i in range(6)])
        sub = await broker.subscribe([topic], group)
        got = await collect(sub, 2, timeout=self.patience)
        topics = {t.name: t for t in await inspect.list_topics()}
        assert topics[topic].events == 6
        assert topics[topic].partitions == (2 if isinstance(broker, Provisioning) else 4)

        async def lag() -> int | None:
            found = [g for g in await inspect.list_groups() if g.name == group]
            return found[0].lag if found else None

        deadline = time.monotonic() + self.patience
        lagging = await lag()
        while lagging != 6 - len(got) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            lagging = await lag()
        assert lagging == 6 - len(got)
        everything = await inspect.read(topic)
        assert sorted(m.message.value for m in everything) == [f"m{i}".encode() for i in range(6)]
        newest = await inspect.read(topic, last=2)
        assert [m.offset for m in newest] == [m.offset for m in everything[-2:]]
        first, second = everything[0], everything[1]
        later = await inspect.read(topic, after={first.partition: first.offset + 1})
        assert all(m.partition == first.partition and m.offset > first.offset for m in later)
        assert await inspect.delete(topic, [(first.partition, first.offset)]) == 1
        moved = await inspect.move(
            topic, [(second.partition, second.offset, archive, second.message)]
        )
        assert moved == 1
        assert [m.message.value for m in await inspect.read(archive)] == [second.message.value]
        assert len(await inspect.read(topic)) == 4
        assert await inspect.read(names("missing")) == []

    async def test_unacked_message_survives_consumer_crash(
        self, open_broker: Any, names: Any
    ) -> None:
        producer = await open_broker()
        topic, group = names("crash"), names("g")
        crashed_broker = await open_broker()
        crashed = await crashed_broker.subscribe([topic], group)
        await producer.publish(topic, [Message(b"precious")])
        (d,) = await collect(crashed, 1, ack=False, timeout=self.patience)
        await crashed_broker.close()  # the member dies without settling
        survivor = await (await open_broker()).subscribe([topic], group)
        (again,) = await collect(survivor, 1, timeout=self.patience * 3)
        assert again.value == b"precious"
        assert again.attempt >= 2
        await d.ack()  # a zombie's late ack is ignored, never an error

    async def test_close_while_consuming(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        topic = names("close")
        sub = await broker.subscribe([topic], names("g"))
        waiting = asyncio.create_task(sub.fetch(10, 30.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await sub.close()
        assert await asyncio.wait_for(waiting, 5.0) == []
        assert time.monotonic() - started < 5.0
        await sub.close()
        await broker.close()
        await broker.close()
        with pytest.raises(TidingsConnectionError):
            await broker.publish(topic, [Message(b"x")])

    # -- delay, replay, exactly-once ---------------------------------------------

    async def test_delayed_delivery(self, open_broker: Any, names: Any) -> None:
        broker = await open_broker()
        self.require(broker, "delayed_publish")
        topic = names("delay")
        sub = await broker.subscribe([topic], names("g"))
        published = time.time()
        await broker.publish(topic, [Message(b"later", deliver_at=published + 0.6)])
        await broker.publish(topic, [Message(b"now")])
        first = await collect(sub, 1, timeout=self.patience)
        assert [d.value for d in first] == [b"now"]
        (later,) = await collect(sub, 1, timeout=self.patience)
        assert later.value == b"later"
        assert time.time() >= published + 0.55

    async def _replay_setup(
        self, open_broker: Any, names: Any
    ) -> tuple[Broker, str, str, Subscription, float]:
        broker: Broker = await open_broker()
        self.require(broker, "replay")
        topic, group = names("replay"), names("g")
        sub = await broker.subscribe([topic], group)
        await broker.publish(topic, _messages(5, key="k", prefix="a"))
        await asyncio.sleep(0.05)
        middle = time.time()
        await asyncio.sleep(0.05)
        await broker.publish(topic, _messages(5, key="k", prefix="b"))
        assert len(await collect(sub, 10, timeout=self.patience)) == 10
        return broker, topic, group, sub, middle

    async def test_replay_from_beginning(self, open_broker: Any, names: Any) -> None:
        broker, topic, group, sub, _ = await self._replay_setup(open_broker, names)
        await _seekable(broker).seek(topic, group, "beginning")
        again = await collect(sub, 10, timeout=self.patience)
        assert [d.value for d in again] == [f"a{i}".encode() for i in range(5)] + [
            f"b{i}".encode() for i in range(5)
        ]

    async def test_replay_from_offset(self, open_broker: Any, names: Any) -> None:
        broker, topic, group, sub, _ = await self._replay_setup(open_broker, names)
        await _seekable(broker).seek(topic, group, 7)
        again = await collect(sub, 3, timeout=self.patience)
        assert [d.value for d in again] == [b"b2", b"b3", b"b4"]

    async def test_replay_from_time(self, open_broker: Any, names: Any) -> None:
        broker, topic, group, sub, middle = await self._replay_setup(open_broker, names)
        await _seekable(broker).seek(topic, group, datetime.fromtimestamp(middle, UTC))
        again = await collect(sub, 5, timeout=self.patience)
        assert [d.value for d in again] == [f"b{i}".encode() for i in range(5)]
        assert await quiet(sub) == []

    async def test_exactly_once_commit(self, open_broker: Any, names: Any) -> None:
        broker: Broker = await open_broker()
        self.require(broker, "exactly_once")
        tx = _transactional(broker)
        topic, out, group = names("eo-in"), names("eo-out"), names("g")
        sub = await broker.subscribe([topic], group)
        await broker.publish(topic, [Message(b"a"), Message(b"a-again")])
        first, second = await collect(sub, 2, ack=False, timeout=self.patience)
        assert await tx.is_processed(first, "evt-1") is False
        assert await tx.commit(first, [(out, Message(b"effect"))], "evt-1") is True
        assert first.settled
        assert await tx.is_processed(second, "evt-1") is True
        assert await tx.commit(second, [(out, Message(b"effect"))], "evt-1") is False
        reader = await broker.subscribe([out], names("reader"))
        effects = await collect(reader, 2, timeout=1.0)
        assert [d.value for d in effects] == [b"effect"]
        assert await quiet(sub) == []

    async def test_publish_after_close_raises(self, broker_factory: BrokerFactory) -> None:
        broker = broker_factory()
        await broker.connect()
        await broker.close()
        with pytest.raises(TidingsError):
            await broker.publish("anything", [Message(b"x")])
