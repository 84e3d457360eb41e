"""The cases of ``bench_pubsub.py``: each returns (events, seconds) on a running emulator.

Every event is the same CloudEvent (binary mode: ``ce-`` attributes, JSON
payload, 64 keys as ordering keys); the raw cases send what tidings would put
on the wire, built beforehand, with the same requests: publishes of a thousand
messages one after the other (keys keep their order), pulls of up to a hundred
messages (two in flight, as the adapter's default ``pullers``) acknowledged in
one call per pull. The raw client is google-cloud-pubsub's GAPIC asyncio layer,
the one the adapter uses.

Consume cases read a backlog: the group's subscription (with message ordering,
as tidings makes it) exists, the events are published (untimed), then the
clock runs from the start of reading to the last event handled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport
from google.pubsub_v1.types import PubsubMessage

from tidings import App
from tidings.broker import Message
from tidings.brokers.pubsub import PubSubBroker
from tidings.brokers.pubsub._binding import write

__all__ = ["CASES", "CHUNK", "Case"]

Case = Callable[[str, int], Awaitable[tuple[int, float]]]
#: Events per publish call (tidings publish_batch; raw Publish request).
CHUNK = 1000
#: Messages per pull and pulls in flight (the adapter's defaults with prefetch 256).
PULL, PULLERS = 100, 2
PROJECT = "bench"


def _name(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:6]}"


def _host(url: str) -> str:
    return url.split("emulator=", 1)[1].split("&", 1)[0]


class _Raw:
    """The GAPIC publisher and subscriber on one channel, as the adapter opens them."""

    def __init__(self, url: str) -> None:
        self.channel = grpc.aio.insecure_channel(_host(url))
        self.publisher = PublisherAsyncClient(
            transport=PublisherGrpcAsyncIOTransport(channel=self.channel)
        )
        self.subscriber = SubscriberAsyncClient(
            transport=SubscriberGrpcAsyncIOTransport(channel=self.channel)
        )

    async def __aenter__(self) -> _Raw:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()


def _messages(url: str, n: int) -> list[PubsubMessage]:
    """``n`` events as tidings writes them on ``url`` (binary mode), as Pub/Sub messages."""
    app = App("bench", broker=url)
    codec = PubSubBroker.from_url(url).default_codec()
    out = []
    for i in range(n):
        event = app.event({"n": i, "note": "bench"}, type="Bench", key=f"k{i % 64}")
        value, headers = codec.encode(event)
        wire, _ = write(Message(value, headers, event.key))
        out.append(
            PubsubMessage(data=wire.data, attributes=dict(wire.attributes), ordering_key=event.key)
        )
    return out


async def _publish(raw: _Raw, topic: str, messages: list[PubsubMessage]) -> None:
    for start in range(0, len(messages), CHUNK):
        await raw.publisher.publish(topic=topic, messages=messages[start : start + CHUNK])


async def raw_publish(url: str, n: int) -> tuple[int, float]:
    messages = _messages(url, n)
    async with _Raw(url) as raw:
        topic = (
            await raw.publisher.create_topic(name=f"projects/{PROJECT}/topics/{_name('raw')}")
        ).name
        started = time.perf_counter()
        await _publish(raw, topic, messages)
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


async def _backlog(url: str, topic: str, group: str, n: int) -> None:
    """The group's subscription as tidings makes it, then ``n`` events published to it."""
    broker = PubSubBroker.from_url(url)
    await broker.connect()
    await (await broker.subscribe([topic], group)).close()
    async with _Raw(url) as raw:
        await _publish(raw, broker.google.topic_path(topic), _messages(url, n))
    await broker.close()


async def raw_consume(url: str, n: int) -> tuple[int, float]:
    topic = _name("raw-con")
    await _backlog(url, topic, "bench", n)
    async with _Raw(url) as raw:
        path = f"projects/{PROJECT}/subscriptions/{topic}__bench"
        seen = 0
        done = asyncio.Event()

        async def puller() -> None:
            nonlocal seen
            while not done.is_set():
                got = await raw.subscriber.pull(
                    request={"subscription": path, "max_messages": PULL}, timeout=3, retry=None
                )
                if got.received_messages:
                    await raw.subscriber.acknowledge(
                        request={
                            "subscription": path,
                            "ack_ids": [m.ack_id for m in got.received_messages],
                        }
                    )
                    seen += len(got.received_messages)
                    if seen >= n:
                        done.set()

        started = time.perf_counter()
        pullers = [asyncio.create_task(puller()) for _ in range(PULLERS)]
        await done.wait()
        elapsed = time.perf_counter() - started
        for task in pullers:
            task.cancel()
        await asyncio.gather(*pullers, return_exceptions=True)
        return n, elapsed


async def tidings_consume(url: str, n: int) -> tuple[int, float]:
    topic = _name("con")
    await _backlog(url, topic, "bench", n)
    app = App("bench", broker=url)
    seen = 0
    done = asyncio.Event()

    @app.subscribe(topic, group="bench")
    async def handle(data: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    started = time.perf_counter()
    async with app:
        await done.wait()
        elapsed = time.perf_counter() - started
    return n, elapsed


CASES: dict[str, Case] = {
    f"raw Publish ({CHUNK} per request)": raw_publish,
    f"tidings publish_batch ({CHUNK} per call)": tidings_publish,
    f"raw consume (pull {PULL}, ack per pull, {PULLERS} in flight)": raw_consume,
    "tidings consume, per-event handler (group, ordering keys)": tidings_consume,
}
