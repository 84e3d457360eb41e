"""Per-event cost of each stage of tidings' publish -> handle -> ack path, in isolation.

Events go through the stages a chunk at a time (the producer's burst between
yields), each stage timed on its own, through public API only (``App.event``,
``Codec``, ``MemoryBroker``, the broker ``Subscription`` and ``Delivery``), so
the numbers stay meaningful while the internals change.

The stages run with the garbage collector off: a collection is charged to
whichever stage happens to trigger it, which would blur them. What the stages
do not cover (the consumer engine: admit, key ordering, Context, handler
dispatch, settlement bookkeeping, the event loop) is the end-to-end time with
the collector off minus their sum; the collector's share is the end-to-end
time with it on minus with it off.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench_memory import (
    EVENT_TYPE,
    GROUP,
    KEYS,
    TOPIC,
    YIELD_EVERY,
    dict_payloads,
    measure_throughput,
    tick_model,
)

__all__ = ["STAGES", "StageTimes", "measure_stages"]

STAGES = (
    ("event", "Event construction (app.event: uuid7, time, validation)"),
    ("encode", "encode (Codec.encode -> JSON bytes)"),
    ("append", "broker append (Message + MemoryBroker.publish)"),
    ("publish_rest", "rest of app.publish (routing, Outgoing, size check, calls)"),
    ("fetch", "fetch (Subscription.fetch -> delivery objects)"),
    ("decode", "decode (Codec.decode -> Event)"),
    ("handler", "payload argument + handler call"),
    ("ack", "ack (Delivery.ack)"),
    ("engine", "consumer engine + event loop (end to end, GC off, minus the above)"),
    ("gc", "garbage collector (end to end: GC on minus GC off)"),
)


@dataclass
class StageTimes:
    """Microseconds per event for each stage key of :data:`STAGES`, and end to end."""

    case: str
    per_event_us: dict[str, float]
    end_to_end_us: float


#: Events per pass through the stages, like the producer's burst between yields.
CHUNK = YIELD_EVERY


def _per_event_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


async def _one_round(n: int, typed: bool) -> dict[str, float]:
    """One pass over ``n`` events, ``CHUNK`` at a time, each stage timed on its own."""
    from tidings import App, Message
    from tidings.brokers.memory import MemoryBroker

    tick = tick_model()
    payloads: list[Any] = dict_payloads(n)
    if typed:
        payloads = [tick(**p) for p in payloads]
    pairs = [(p, KEYS[i % len(KEYS)]) for i, p in enumerate(payloads)]
    kind: dict[str, Any] = {} if typed else {"type": EVENT_TYPE}

    # The stages run against ``broker``; whole app.publish calls go to ``app``'s own broker.
    broker = MemoryBroker()
    member = await broker.subscribe([TOPIC], GROUP)
    app_broker = MemoryBroker()
    app_member = await app_broker.subscribe([TOPIC], GROUP)
    app = App("bench", broker=app_broker)
    await app.start()
    codec = app.codec
    publish = app.publish
    clock = time.perf_counter
    totals = dict.fromkeys(("event", "encode", "append", "publish", "fetch"), 0.0)
    totals.update(dict.fromkeys(("decode", "handler", "ack"), 0.0))
    seen = 0

    async def handler(data: Any) -> None:
        nonlocal seen
        seen += 1

    for first in range(0, n, CHUNK):
        chunk = pairs[first : first + CHUNK]
        size = len(chunk)
        t0 = clock()
        events = [app.event(p, key=k, **kind) for p, k in chunk]
        t1 = clock()
        bodies = [codec.encode(e) for e in events]
        t2 = clock()
        for (value, headers), event in zip(bodies, events, strict=True):
            await broker.publish(TOPIC, [Message(value, headers, event.key)])
        t3 = clock()
        deliveries: list[Any] = []
        while len(deliveries) < size:
            deliveries.extend(await member.fetch(size - len(deliveries), 0.0))
        t4 = clock()
        decoded = [codec.decode(d.value, d.headers) for d in deliveries]
        t5 = clock()
        if typed:
            for event in decoded:
                await handler(tick.model_validate(event.data))
        else:
            for event in decoded:
                await handler(event.data)
        t6 = clock()
        for d in deliveries:
            await d.ack()
        t7 = clock()
        for p, k in chunk:
            await publish(p, topic=TOPIC, key=k, **kind)
        t8 = clock()
        # Untimed: drain the app's broker too, so both brokers keep the same state.
        drained: list[Any] = []
        while len(drained) < size:
            drained.extend(await app_member.fetch(size - len(drained), 0.0))
        for d in drained:
            await d.ack()
        for name, seconds in (
            ("event", t1 - t0),
            ("encode", t2 - t1),
            ("append", t3 - t2),
            ("fetch", t4 - t3),
            ("decode", t5 - t4),
            ("handler", t6 - t5),
            ("ack", t7 - t6),
            ("publish", t8 - t7),
        ):
            totals[name] += seconds
    if seen != n:
        raise RuntimeError(f"stages: handled {seen} of {n} events")
    await app.stop()
    await app_broker.close()
    await broker.close()
    out = {name: _per_event_us(seconds, n) for name, seconds in totals.items()}
    out["publish_rest"] = out.pop("publish") - out["event"] - out["encode"] - out["append"]
    return out


def _median_seconds(case: str, n: int, rounds: int, collect: bool) -> float:
    was_enabled = gc.isenabled()
    if not collect:
        gc.disable()
    try:
        return statistics.median(
            asyncio.run(measure_throughput(case, n)).seconds for _ in range(rounds)
        )
    finally:
        if was_enabled:
            gc.enable()


def measure_stages(n: int, rounds: int = 3) -> list[StageTimes]:
    """Stage costs (best of ``rounds``) for the dict and the pydantic payload cases."""
    results = []
    for case, typed in (("tidings-dict", False), ("tidings-pydantic", True)):
        asyncio.run(_one_round(min(n, 2_000), typed))  # warm-up
        best: dict[str, float] = {}
        gc.disable()
        try:
            for _ in range(rounds):
                for name, value in asyncio.run(_one_round(n, typed)).items():
                    best[name] = min(value, best.get(name, value))
        finally:
            gc.enable()
        without_gc = _per_event_us(_median_seconds(case, n, rounds, collect=False), n)
        end_to_end = _per_event_us(_median_seconds(case, n, rounds, collect=True), n)
        best["engine"] = without_gc - sum(best.values())
        best["gc"] = end_to_end - without_gc
        results.append(StageTimes(case, best, end_to_end))
    return results
