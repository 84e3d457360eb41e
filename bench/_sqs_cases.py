"""The cases of ``bench_sqs.py``: each returns (events, seconds) on a running moto server.

Every event is the same CloudEvent (binary mode: attributes as message
attributes, JSON payload, 64 keys); the raw cases send what tidings would put
on the wire, built beforehand, with the same batching (ten per call) and the
same calls in flight.

moto spends time proportional to a queue's length on every send and receive,
so a backlog of thousands makes it, not the client, the bottleneck. Publish
cases therefore publish to a topic no queue is subscribed to (SNS takes the
batch and drops it), and consume cases keep the queue short: a raw producer,
the same for both, sends while the consumer reads; the clock runs from the
first send to the last event handled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.session import get_session

from tidings import App
from tidings.broker import Message
from tidings.brokers.sqs import SqsBroker
from tidings.brokers.sqs._binding import write

__all__ = ["CASES", "CHUNK", "IN_FLIGHT", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
#: Events per tidings publish_batch call.
CHUNK = 1000
#: Calls in flight at once (as the adapter's publish: _IN_FLIGHT).
IN_FLIGHT = 16


def _name(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:6]}"


def _endpoint(url: str) -> str:
    return "http://" + url.split("@", 1)[1].split("?", 1)[0]


def _client(url: str, service: str) -> Any:
    return get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=_endpoint(url),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _entries(url: str, n: int) -> list[dict[str, Any]]:
    """``n`` events as tidings writes them on ``url`` (its default codec: binary mode),
    as SNS PublishBatch entries (Id set per batch)."""
    app = App("bench", broker=url)
    codec = SqsBroker.from_url(url).default_codec()
    out = []
    for i in range(n):
        event = app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}")
        value, headers = codec.encode(event)
        wire = write(Message(value, headers, event.key))
        out.append({"Message": wire.body, "MessageAttributes": wire.attributes})
    return out


async def _gated(calls: list[Callable[[], Awaitable[Any]]]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def raw_publish(url: str, n: int) -> tuple[int, float]:
    entries = _entries(url, n)
    async with _client(url, "sns") as sns:
        arn = (await sns.create_topic(Name=_name("raw-pub")))["TopicArn"]
        batches = [entries[i : i + 10] for i in range(0, n, 10)]

        def call(batch: list[dict[str, Any]]) -> Callable[[], Awaitable[Any]]:
            items = [{"Id": str(k), **e} for k, e in enumerate(batch)]
            return lambda: sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=items)

        started = time.perf_counter()
        await _gated([call(b) for b in batches])
        return n, time.perf_counter() - started


async def tidings_publish(url: str, n: int) -> tuple[int, float]:
    app = App("bench", broker=url)
    topic = _name("pub")
    async with app:
        events = [
            app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}") for i in range(n)
        ]
        await app.publish(events[0], topic=topic)  # creates the topic (untimed)
        started = time.perf_counter()
        for start in range(1, n, CHUNK):
            await app.publish_batch(events[start : start + CHUNK], topic=topic)
        return n - 1, time.perf_counter() - started


async def _produce(url: str, arn: str, entries: list[dict[str, Any]]) -> None:
    """The raw producer both consume cases read from."""
    async with _client(url, "sns") as sns:
        batches = [entries[i : i + 10] for i in range(0, len(entries), 10)]

        def call(batch: list[dict[str, Any]]) -> Callable[[], Awaitable[Any]]:
            items = [{"Id": str(k), **e} for k, e in enumerate(batch)]
            return lambda: sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=items)

        await _gated([call(b) for b in batches])


async def raw_consume(url: str, n: int) -> tuple[int, float]:
    entries = _entries(url, n)
    async with _client(url, "sns") as sns, _client(url, "sqs") as sqs:
        arn = (await sns.create_topic(Name=_name("raw-con")))["TopicArn"]
        queue = await sqs.create_queue(QueueName=_name("raw-con-q"))
        attributes = await sqs.get_queue_attributes(
            QueueUrl=queue["QueueUrl"], AttributeNames=["QueueArn"]
        )
        await sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=attributes["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        seen = 0
        started = time.perf_counter()
        producer = asyncio.create_task(_produce(url, arn, entries))
        while seen < n:
            got = await sqs.receive_message(
                QueueUrl=queue["QueueUrl"],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            messages = got.get("Messages", [])
            if messages:
                seen += len(messages)
                await sqs.delete_message_batch(
                    QueueUrl=queue["QueueUrl"],
                    Entries=[
                        {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]}
                        for k, m in enumerate(messages)
                    ],
                )
        elapsed = time.perf_counter() - started
        await producer
        return n, elapsed


async def tidings_consume(url: str, n: int) -> tuple[int, float]:
    topic = _name("con")
    app = App("bench", broker=url)
    seen = 0
    done = asyncio.Event()

    @app.subscribe(topic, group="bench", ordering="none")
    async def handle(data: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    entries = _entries(url, n)
    async with app:
        broker = app.broker
        assert isinstance(broker, SqsBroker)
        arn = await broker.aws.topic_arn(topic)
        started = time.perf_counter()
        producer = asyncio.create_task(_produce(url, arn, entries))
        await done.wait()
        elapsed = time.perf_counter() - started
        await producer
    return n, elapsed


CASES: dict[str, Case] = {
    "raw publish_batch (10 per call, 16 in flight)": raw_publish,
    f"tidings publish_batch ({CHUNK} per call)": tidings_publish,
    "raw consume (receive 10, delete batch)": raw_consume,
    "tidings consume, per-event handler (group)": tidings_consume,
}
