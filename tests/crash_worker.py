"""A consumer or producer process for the crash tests (run as a script, killed with -9).

consume DB MODE LOG: joins group "crash" on "crash.in"; for each event appends
"key seq attempt pid time_ns" to LOG (written at once, so a kill loses no
line); MODE "exactly_once" also returns a follow-up to "crash.out".
produce DB COUNT BATCH: publishes COUNT events in batches and prints the last
seq of each batch once publish_batch returned.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from tidings import App, Context


def broker_url(db: str) -> str:
    return f"sqlite:///{db}?session_timeout=1.5&heartbeat=0.25"


async def consume(db: str, mode: str, log_path: str) -> None:
    app = App(f"worker-{os.getpid()}", broker=broker_url(db))
    app.route("Counted", "crash.out")
    log = open(log_path, "a", buffering=1)  # noqa: SIM115, ASYNC230 - lives with the process

    @app.subscribe("crash.in", group="crash", delivery=mode, concurrency=4)
    async def handle(data: dict[str, Any], ctx: Context) -> Any:
        await asyncio.sleep(0.0003)
        log.write(f"{data['key']} {data['seq']} {ctx.attempt} {os.getpid()} {time.time_ns()}\n")
        if mode == "exactly_once":
            ctx.emit(data, type="Counted", partitionkey=data["key"])
        return None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: dump_state(app))
    print("ready", flush=True)
    await app.serve(stop)


def dump_state(app: App) -> None:
    """On SIGUSR1, what each consumer holds (for a test that found a stuck partition)."""
    for consumer in app._consumers:
        unsettled = [
            (d.partition, d.offset, d.key, d.attempt) for d in list(consumer.flow.unsettled)[:20]
        ]
        lanes = []
        if consumer.keys is not None:
            for key, lane in list(consumer.keys._lanes.items())[:20]:
                lanes.append((key, lane.retry_id, len(lane.waiting or ())))
        print(
            f"pid {os.getpid()} {consumer.sub.name}: state={consumer.state} idle={consumer.idle} "
            f"unsettled={len(consumer.flow.unsettled)} {unsettled} lanes={len(consumer.keys or ())}"
            f" {lanes} ready={len(consumer.ready)} commits={len(consumer.commits)} "
            f"timers={len(consumer.timers.handles)} stats={consumer.stats}",
            file=sys.stderr,
            flush=True,
        )


async def produce(db: str, count: int, batch: int) -> None:
    app = App(f"producer-{os.getpid()}", broker=broker_url(db))
    for start in range(0, count, batch):
        events = [
            app.event({"key": f"k{i % 50}", "seq": i}, type="Item", key=f"k{i % 50}")
            for i in range(start, min(start + batch, count))
        ]
        await app.publish_batch(events, topic="crash.in")
        print(events[-1].data["seq"], flush=True)
    await app.stop()


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "consume":
        asyncio.run(consume(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        asyncio.run(produce(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
