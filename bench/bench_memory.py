"""In-process throughput, latency and peak RSS: tidings' memory broker against pyee and blinker.

Every case does the same work: a producer sends N events carrying the same
small payload to one async listener and the clock stops once the listener has
handled all N (for tidings: handled *and* acked, at-least-once). The producer
yields to the event loop every :data:`YIELD_EVERY` events, as a producer fed
by I/O would, so sending and handling interleave. Payloads and keys are built
before the clock starts.

Each case runs in its own subprocess (``python bench/bench_memory.py --case
NAME``, which prints one JSON line): its peak RSS is its own, and it imports
only the library it measures. Within the subprocess a short warm-up run comes
first, then ``repeat`` timed runs (the table reports the median and the best),
then one latency run at a fixed rate.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _rss import peak_rss_mib

__all__ = [
    "CASES",
    "CaseResult",
    "Options",
    "Timing",
    "dict_payloads",
    "measure_case",
    "measure_latency",
    "measure_throughput",
    "open_rig",
    "pin_to",
    "run_cases",
    "tick_model",
]

TOPIC = "bench.ticks"
GROUP = "bench"
EVENT_TYPE = "Tick"
KEYS = tuple(f"device-{i:02d}" for i in range(16))
YIELD_EVERY = 256
WARMUP_EVENTS = 2_000

#: case name -> label shown in the table, in table order.
CASES: dict[str, str] = {
    "tidings-dict": "tidings, dict payload",
    "tidings-pydantic": "tidings, pydantic payload",
    "pyee": "pyee (AsyncIOEventEmitter)",
    "blinker": "blinker (signal)",
}

Hook = Callable[[int], None]


@dataclass
class Options:
    events: int = 50_000
    repeat: int = 5
    latency_rate: float = 2_000.0
    latency_seconds: float = 2.0
    cpu: int | None = None

    @property
    def latency_events(self) -> int:
        """Events sent by the latency run: ``rate * seconds``, but never more than ``events``."""
        return max(1, min(self.events, round(self.latency_rate * self.latency_seconds)))


@dataclass
class CaseResult:
    case: str
    label: str
    events: int
    seconds: list[float]
    cpu_seconds: list[float] = field(default_factory=list)
    latency_events: int = 0
    latency_rate: float = 0.0
    p50_us: float | None = None
    p99_us: float | None = None
    rss_start_mib: float | None = None
    rss_peak_mib: float = 0.0
    cpu: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_rate(self) -> float:
        return self.events / self.median_seconds

    @property
    def best_rate(self) -> float:
        return self.events / min(self.seconds)

    @property
    def median_cpu_rate(self) -> float:
        """Events per second of CPU time: what the rate would be with a core to itself."""
        return self.events / statistics.median(self.cpu_seconds)


# -- payloads ------------------------------------------------------------------


def dict_payloads(n: int) -> list[dict[str, Any]]:
    return [{"n": i, "sku": "SKU-00042", "quantity": 3, "price": 19.99} for i in range(n)]


def tick_model() -> type[Any]:
    from pydantic import BaseModel

    class Tick(BaseModel):
        n: int
        sku: str
        quantity: int
        price: float

    return Tick


# -- rigs: one framework wired to one async listener -----------------------------


@dataclass
class Rig:
    """``send(i)`` sends event ``i``; the listener calls the hook with ``i``."""

    send: Callable[[int], Awaitable[None]]
    #: Wait until every event sent so far is handled (and acked, for tidings).
    settle: Callable[[int], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    note: str = ""


async def _open_tidings(hook: Hook, n: int, typed: bool) -> Rig:
    from tidings import App
    from tidings.brokers.memory import MemoryBroker

    # A private hub (not memory://NAME), so each run's log is freed with its broker.
    broker = MemoryBroker()
    app = App("bench", broker=broker)
    if typed:
        Tick = tick_model()

        @app.subscribe(TOPIC, group=GROUP)
        async def on_tick(tick: Tick) -> None:
            hook(tick.n)

        payloads: list[Any] = [Tick(**p) for p in dict_payloads(n)]
    else:

        @app.subscribe(TOPIC, group=GROUP)
        async def on_tick(data: dict[str, Any]) -> None:
            hook(data["n"])

        payloads = dict_payloads(n)

    keys = [KEYS[i % len(KEYS)] for i in range(n)]
    publish = app.publish
    await app.start()
    (name,) = app.stats()

    if typed:

        async def send(i: int) -> None:
            await publish(payloads[i], topic=TOPIC, key=keys[i])
    else:

        async def send(i: int) -> None:
            await publish(payloads[i], topic=TOPIC, type=EVENT_TYPE, key=keys[i])

    async def settle(count: int) -> None:
        # The consumer acks right after the handler returns, so this loop rarely turns;
        # tidings offers no "all acked" event to wait on.
        deadline = time.monotonic() + 10.0
        while app.stats()[name].handled < count or not app.idle:
            if time.monotonic() > deadline:
                raise RuntimeError(f"tidings: {count} events handled but not all acked")
            await asyncio.sleep(0)
        if not broker.hub.is_idle():
            raise RuntimeError("tidings: events handled but the group has not caught up")

    async def close() -> None:
        await app.stop()
        await broker.close()

    return Rig(send, settle, close, "at_least_once, concurrency=1, 16 keys, 4 partitions")


async def _open_pyee(hook: Hook, n: int) -> Rig:
    from pyee.asyncio import AsyncIOEventEmitter

    emitter = AsyncIOEventEmitter()

    async def on_tick(data: dict[str, Any]) -> None:
        hook(data["n"])

    emitter.on(EVENT_TYPE, on_tick)
    payloads = dict_payloads(n)
    emit = emitter.emit

    async def send(i: int) -> None:
        emit(EVENT_TYPE, payloads[i])

    async def settle(count: int) -> None:
        await emitter.wait_for_complete()

    async def close() -> None:
        emitter.remove_all_listeners()

    return Rig(send, settle, close, "emit schedules one task per event")


async def _open_blinker(hook: Hook, n: int) -> Rig:
    import blinker

    signal = blinker.signal("bench.tick")
    payloads = dict_payloads(n)
    # blinker >= 1.7 awaits async receivers with send_async; older ones only call.
    if hasattr(signal, "send_async"):

        async def on_tick(sender: object, data: dict[str, Any]) -> None:
            hook(data["n"])

        send_async = signal.send_async

        async def send(i: int) -> None:
            await send_async(None, data=payloads[i])

        note = f"blinker {_version('blinker')}: async receiver, await send_async"
    else:

        def on_tick(sender: object, data: dict[str, Any]) -> None:
            hook(data["n"])

        send_sync = signal.send

        async def send(i: int) -> None:
            send_sync(None, data=payloads[i])

        note = f"blinker {_version('blinker')}: no send_async, sync receiver"
    signal.connect(on_tick)

    async def settle(count: int) -> None:
        return None  # the receiver ran inside send

    async def close() -> None:
        signal.disconnect(on_tick)

    return Rig(send, settle, close, note)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


async def open_rig(case: str, hook: Hook, n: int) -> Rig:
    if case == "tidings-dict":
        return await _open_tidings(hook, n, typed=False)
    if case == "tidings-pydantic":
        return await _open_tidings(hook, n, typed=True)
    if case == "pyee":
        return await _open_pyee(hook, n)
    if case == "blinker":
        return await _open_blinker(hook, n)
    raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


# -- measurements ---------------------------------------------------------------


@dataclass
class Timing:
    """One timed run: wall-clock and CPU seconds, and the rig's note."""

    seconds: float
    cpu_seconds: float
    note: str


async def measure_throughput(case: str, n: int) -> Timing:
    """Time sending ``n`` events and seeing all of them handled."""
    done = asyncio.Event()
    handled = 0

    def hook(_: int) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    rig = await open_rig(case, hook, n)
    send = rig.send
    last = YIELD_EVERY - 1
    try:
        gc.collect()
        cpu_start = time.process_time()
        start = time.perf_counter()
        for i in range(n):
            await send(i)
            if i % YIELD_EVERY == last:
                await asyncio.sleep(0)
        await done.wait()
        await rig.settle(n)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    finally:
        await rig.close()
    if handled != n:
        raise RuntimeError(f"{case}: handled {handled} of {n} events")
    return Timing(elapsed, cpu, rig.note)


async def measure_latency(case: str, count: int, rate: float) -> list[int]:
    """Send ``count`` events at ``rate`` per second; nanoseconds from send to handler start.

    Events are sent on schedule (event ``i`` at ``start + i / rate``); when the
    loop wakes late, the events already due go out back to back.
    """
    sent_at = [0] * count
    latencies: list[int] = []
    done = asyncio.Event()
    clock = time.perf_counter_ns

    def hook(i: int) -> None:
        latencies.append(clock() - sent_at[i])
        if len(latencies) == count:
            done.set()

    rig = await open_rig(case, hook, count)
    try:
        start = time.perf_counter()
        i = 0
        while i < count:
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            sent_at[i] = clock()
            await rig.send(i)
            i += 1
        await done.wait()
        await rig.settle(count)
    finally:
        await rig.close()
    return latencies


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def _rss_now_mib() -> float | None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_case(case: str, options: Options) -> CaseResult:
    """Run one case in this process: warm-up, timed runs, then the latency run."""
    pin_to(options.cpu)
    result = CaseResult(case, CASES[case], options.events, [], cpu=options.cpu)
    # Warm-up: imports, first-call caches (type hints, payload info), allocator arenas.
    warm_up = asyncio.run(measure_throughput(case, min(options.events, WARMUP_EVENTS)))
    result.notes.append(warm_up.note)
    result.rss_start_mib = _rss_now_mib()
    for _ in range(options.repeat):
        timing = asyncio.run(measure_throughput(case, options.events))
        result.seconds.append(timing.seconds)
        result.cpu_seconds.append(timing.cpu_seconds)
    if options.latency_seconds > 0:
        count = options.latency_events
        latencies = sorted(asyncio.run(measure_latency(case, count, options.latency_rate)))
        result.latency_events = count
        result.latency_rate = options.latency_rate
        result.p50_us = _percentile(latencies, 0.50) / 1_000
        result.p99_us = _percentile(latencies, 0.99) / 1_000
    result.rss_peak_mib = peak_rss_mib()
    return result


def run_cases(
    cases: Sequence[str],
    options: Options,
    progress: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Run each case in a fresh subprocess, one after another."""
    results = []
    for case in cases:
        if progress is not None:
            progress(case)
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--case",
            case,
            "--events",
            str(options.events),
            "--repeat",
            str(options.repeat),
            "--latency-rate",
            str(options.latency_rate),
            "--latency-seconds",
            str(options.latency_seconds),
        ]
        if options.cpu is not None:
            command += ["--cpu", str(options.cpu)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"case {case} failed (exit {done.returncode}):\n{done.stderr}")
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(CaseResult(**raw))
    return results


def pin_to(cpu: int | None) -> None:
    """Run this process on ``cpu`` only (no-op for None or where unsupported)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _worker(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one benchmark case; print JSON.")
    parser.add_argument("--case", required=True, choices=list(CASES))
    parser.add_argument("--events", type=int, default=Options.events)
    parser.add_argument("--repeat", type=int, default=Options.repeat)
    parser.add_argument("--latency-rate", type=float, default=Options.latency_rate)
    parser.add_argument("--latency-seconds", type=float, default=Options.latency_seconds)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    options = Options(
        events=args.events,
        repeat=args.repeat,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        cpu=args.cpu,
    )
    print(json.dumps(asdict(measure_case(args.case, options))))


if __name__ == "__main__":
    _worker()
