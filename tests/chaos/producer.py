"""A producer process: publishes numbered, keyed events until SIGTERM (or a kill).

``python -m tests.chaos.producer URL TOPIC PRODUCER LOG --keys K --rate R --seed S``

Events are ``{"producer": PRODUCER, "n": n, "key": key}`` with n counting
from 0. After each ``publish`` or ``publish_batch`` returned, one line per
event, ``A PRODUCER:n key``, is appended to LOG (line-buffered: a kill loses
no acknowledged line); a publish that raised writes ``F`` lines instead (its
events may or may not be stored). SIGTERM stops after the publish in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from typing import TextIO

from tidings import App, TidingsError

__all__ = ["EVENT_TYPE", "produce"]

EVENT_TYPE = "ChaosItem"
MAX_BATCH = 8


async def produce(
    url: str, topic: str, producer: str, log: TextIO, keys: int, rate: float, seed: int
) -> None:
    app = App(f"chaos-{producer}", broker=url)
    rng = random.Random(f"{seed}/{producer}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    n = 0
    try:
        while not stop.is_set():
            size = 1 if rng.random() < 0.5 else rng.randint(2, MAX_BATCH)
            keyed = [(n + i, f"k{rng.randrange(keys):02d}") for i in range(size)]
            events = [
                app.event({"producer": producer, "n": i, "key": key}, type=EVENT_TYPE, key=key)
                for i, key in keyed
            ]
            n += size
            try:
                if size == 1:
                    await app.publish(events[0], topic=topic)
                else:
                    await app.publish_batch(events, topic=topic)
            except TidingsError as exc:
                print(f"{producer}: publish failed: {exc!r}", file=sys.stderr, flush=True)
                log.write("".join(f"F {producer}:{i} {key}\n" for i, key in keyed))
            else:
                log.write("".join(f"A {producer}:{i} {key}\n" for i, key in keyed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), size / rate)
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("producer")
    parser.add_argument("log")
    parser.add_argument("--keys", type=int, default=27)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.log, "a", buffering=1) as log:
        asyncio.run(
            produce(args.url, args.topic, args.producer, log, args.keys, args.rate, args.seed)
        )


if __name__ == "__main__":
    main()
