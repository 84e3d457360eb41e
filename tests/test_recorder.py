"""The outcome recorder: one stored record per handling attempt, written in batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tidings import App, Event, Message, RetryPolicy
from tidings._recorder import OutcomeRecorder
from tidings.brokers.memory import MemoryBroker
from tidings.brokers.sqlite import SqliteBroker
from tidings.errors import DecodeError
from tidings.inspection import Inspectable
from tidings.outcomes import HANDLINGS_TOPIC, Handling, decode_handlings, encode_handlings
from tidings.testing.semantics import eventually

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)


async def _records(broker: Inspectable) -> list[Handling]:
    stored = await broker.read(HANDLINGS_TOPIC, limit=10_000)
    return [record for message in stored for record in decode_handlings(message.message)]


async def test_an_app_on_the_embedded_broker_records_every_attempt(tmp_path: Path) -> None:
    broker = SqliteBroker(str(tmp_path / "rec.db"))
    app = App("shop", broker=broker)
    attempts: dict[str, int] = {}

    @app.subscribe("orders", retry=FAST)
    async def reserve(event: Event) -> None:
        attempts[event.data] = attempts.get(event.data, 0) + 1
        if event.data == "flaky" and attempts[event.data] == 1:
            raise TimeoutError("slow warehouse")
        if event.data == "bad":
            raise ValueError("no such sku")

    await broker.connect()
    try:
        async with app:
            ok = await app.publish("ok", topic="orders", type="Order")
            flaky = await app.publish("flaky", topic="orders", type="Order")
            bad = await app.publish("bad", topic="orders", type="Order")
            await eventually(lambda: attempts == {"ok": 1, "flaky": 2, "bad": 3}, 10, "attempts")
            stats = app.stats()["shop.reserve"]
            await eventually(lambda: stats.dead_lettered == 1, 10, "the dead letter")
        records = await _records(broker)
        stored = await broker.read("orders")
    finally:
        await broker.close()

    where = {
        app.codec.decode(m.message.value, m.message.headers).id: (m.partition, m.offset)
        for m in stored
    }
    of: dict[str, list[Handling]] = {event.id: [] for event in (ok, flaky, bad)}
    for record in records:
        event_id = next(i for i, p in where.items() if p == (record.partition, record.offset))
        of[event_id].append(record)
    assert {r.app for r in records} == {"shop"}
    assert {(r.topic, r.group) for r in records} == {("orders", "shop.reserve")}
    assert [(r.outcome, r.attempt) for r in of[ok.id]] == [("handled", 1)]
    assert [(r.outcome, r.attempt) for r in of[flaky.id]] == [
        ("retried", 1),
        ("handled", 2),
    ]
    assert [(r.outcome, r.attempt) for r in of[bad.id]] == [
        ("retried", 1),
        ("retried", 2),
        ("dead_lettered", 3),
    ]
    handled = of[flaky.id][1]
    assert handled.event is None  # found by where it is stored: the id would only add bytes
    assert handled.seconds is not None and 0 <= handled.seconds < 5
    assert handled.started is not None and handled.started >= handled.published_at
    retried = of[flaky.id][0]
    assert retried.error == "TimeoutError('slow warehouse')"
    assert retried.delay is not None and retried.event is None
    dead = of[bad.id][-1]
    assert dead.dead_letter_topic == "orders.dlq"
    assert dead.error == "ValueError('no such sku')"


@pytest.mark.parametrize(("record", "expected"), [(None, False), (True, True), (False, False)])
async def test_off_by_default_on_a_broker_without_local_storage(
    record: bool | None, expected: bool
) -> None:
    broker = MemoryBroker()
    app = App("mem", broker=broker, record_handlings=record)
    done = asyncio.Event()

    @app.subscribe("jobs")
    async def work(event: Event) -> None:
        done.set()

    await broker.connect()
    async with app:
        await app.publish(1, topic="jobs", type="Job")
        await asyncio.wait_for(done.wait(), 10)
    topics = {t.name for t in await broker.list_topics()}
    assert (HANDLINGS_TOPIC in topics) is expected
    await broker.close()


async def test_records_are_written_in_batches_and_at_stop(tmp_path: Path) -> None:
    broker = MemoryBroker()
    await broker.connect()
    recorder = OutcomeRecorder("a", broker, interval=60.0, batch=1, flush_at=2)
    await recorder.start()
    await broker.publish("t", [Message(b"{}")])
    subscription = await broker.subscribe(["t"], "g")
    [delivery] = await subscription.fetch(1, 5.0)
    recorder.handled("s", delivery, Event(type="T", source="/t"), 0.25)
    await asyncio.sleep(0.05)
    assert await broker.read(HANDLINGS_TOPIC) == []  # neither full nor due
    recorder.retried("s", delivery, ValueError(), 0.1)
    recorder.handled(
        "s", delivery, Event(type="T", source="/t"), 0.25
    )  # the batch is full: written without waiting for the interval
    async with asyncio.timeout(10):
        while not await broker.read(HANDLINGS_TOPIC):  # noqa: ASYNC110 - another task writes
            await asyncio.sleep(0.01)
    recorder.committed("s", delivery, 0)
    await recorder.stop()
    records = await _records(broker)
    assert [r.outcome for r in records] == ["handled", "retried", "handled", "committed"]
    assert {(r.group, r.topic, r.offset) for r in records} == {("g", "t", delivery.offset)}
    assert recorder.dropped == 0
    await broker.close()


def test_records_round_trip_and_foreign_messages_are_refused() -> None:
    record = Handling("a", "s", "g", "t", 1, 7, 2, "retried", 2.0, 1.0, error="E()", delay=0.5)
    assert decode_handlings(encode_handlings([record])) == [record]
    with pytest.raises(DecodeError):
        decode_handlings(encode_handlings([record]).__class__(value=b"[]"))
