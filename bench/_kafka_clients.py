"""Which Kafka client: confluent-kafka (librdkafka) against aiokafka, publish and consume.

Run: ``python bench/_kafka_clients.py --bootstrap 127.0.0.1:PORT [--events N]`` against a
running broker; prints events/s for each client. The figures are quoted in
docs/brokers/kafka.md (why tidings uses aiokafka).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid


def confluent(bootstrap: str, n: int) -> tuple[float, float]:
    from confluent_kafka import Consumer, Producer

    topic = f"cmp-ck-{uuid.uuid4().hex[:6]}"
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False, "linger.ms": 5}
    )
    started = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, b"x" * 64, key=str(i % 64).encode())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    publish = n / (time.perf_counter() - started)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    got = 0
    started = time.perf_counter()
    while got < n:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        got += sum(1 for m in batch if m.error() is None)
    consumer.commit(asynchronous=False)
    consume = n / (time.perf_counter() - started)
    consumer.close()
    return publish, consume


async def aiokafka(bootstrap: str, n: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"cmp-aio-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, b"x" * 64, key=str(i % 64).encode()) for i in range(n)]
    await asyncio.gather(*futures)
    publish = n / (time.perf_counter() - started)
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = 0
    started = time.perf_counter()
    while got < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
        got += sum(len(records) for records in batches.values())
    await consumer.commit()
    consume = n / (time.perf_counter() - started)
    await consumer.stop()
    return publish, consume


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    ck = confluent(args.bootstrap, args.events)
    aio = asyncio.run(aiokafka(args.bootstrap, args.events))
    print(f"confluent-kafka publish {ck[0]:,.0f}/s consume {ck[1]:,.0f}/s")
    print(f"aiokafka        publish {aio[0]:,.0f}/s consume {aio[1]:,.0f}/s")


if __name__ == "__main__":
    main()
