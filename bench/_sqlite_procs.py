"""The multi-process cases of the embedded-broker benchmark, and the child processes they run.

``group``: one or two consumer processes of one group drain the same
pre-published events; the clock runs from "go" until the group's committed
offsets (read from the file, read-only) cover every event. ``latency``: a
producer process publishes at a fixed rate with the send time in the data; a
consumer process notes ``time.time()`` at handler start. ``idle``: a
subscribed consumer process with nothing to do measures its own CPU time.

Children are this file run as a script (``python _sqlite_procs.py ROLE ...``):
they print ``ready`` once set up, and one JSON line with their numbers last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from _rss import peak_rss_mib
from _sqlite_data import (
    EVENT_TYPE,
    GROUP,
    KEYS,
    TOPIC,
    Progress,
    Run,
    create_topic,
    encoded_messages,
    percentile,
    prepublish,
    scratch_db,
    url,
)

from tidings.context import Context

__all__ = ["group", "idle", "latency"]

_TIMEOUT = 300.0
_POLL = 0.005


# -- the parent's side --------------------------------------------------------------


class _Child:
    """A child process running one role; its stderr goes to a file beside the database."""

    def __init__(self, role: str, path: str, *args: str) -> None:
        self.role = role
        self._stderr: IO[str] = open(f"{path}.{role}.{time.monotonic_ns()}.err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), role, "--db", path, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def _failure(self, what: str) -> RuntimeError:
        self._stderr.seek(0)
        return RuntimeError(f"{self.role} child {what}:\n{self._stderr.read()[-4000:]}")

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise self._failure(f"did not get ready (said {line!r})")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, stop: bool = False) -> dict[str, Any]:
        """Wait for the child's JSON line; ``stop``: first ask it to stop (SIGUSR1)."""
        if stop:
            self.proc.send_signal(signal.SIGUSR1)
        try:
            out, _ = self.proc.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise self._failure("timed out") from None
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise self._failure(f"failed (exit {self.proc.returncode})")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def group(n: int, members: int, heartbeat: float | None = None, exactly_once: bool = False) -> Run:
    """``members`` processes of one group drain ``n`` pre-published events.

    ``heartbeat``: the members' heartbeat interval (None: the broker's default).
    ``exactly_once``: members handle exactly once with concurrency 4, a 0.5 ms
    handler and one follow-up event each (defect 7 of the faults issue).
    """
    options: tuple[str, ...] = () if heartbeat is None else ("--heartbeat", str(heartbeat))
    if exactly_once:
        options += ("--exactly-once",)
    with scratch_db() as path:
        prepublish(path, encoded_messages(n))
        children = [_Child("member", path, *options) for _ in range(members)]
        progress = Progress(path)
        try:
            for child in children:
                child.wait_ready()
            start = time.perf_counter()
            for child in children:
                child.go()
            deadline = start + _TIMEOUT
            # When every member first holds a partition, and the group's position then.
            balanced: tuple[float, int] | None = None
            while (committed := progress.committed()) < n:
                now = time.perf_counter()
                if now > deadline:
                    raise RuntimeError(f"group of {members}: not done after {_TIMEOUT:.0f}s")
                if balanced is None and progress.holders() >= members:
                    balanced = (now, committed)
                time.sleep(_POLL)
            seconds = time.perf_counter() - start
            results = [child.result(stop=True) for child in children]
        finally:
            progress.close()
            for child in children:
                child.kill()
    handled = [r["handled"] for r in results]
    note = f"handled per process {handled}"
    if sum(handled) > n:
        note += f", {sum(handled) - n} redelivered while partitions moved"
    if members > 1 and balanced is not None:
        at, committed = balanced
        rest = start + seconds - at
        if rest > 0:
            note += (
                f"; every member held partitions after {at - start:.2f}s, then "
                f"{(n - committed) / rest:,.0f} events/s"
            )
    return Run(
        seconds,
        sum(r["cpu_seconds"] for r in results),
        child_rss_mib=max(r["rss_mib"] for r in results),
        shares=handled,
        note=note,
    )


def latency(rate: float, seconds: float) -> Run:
    """Producer and consumer processes; send -> handler start across processes."""
    count = max(1, round(rate * seconds))
    with scratch_db() as path:
        create_topic(path)
        consumer = _Child("latency-consumer", path, "--count", str(count))
        producer: _Child | None = None
        try:
            consumer.wait_ready()
            producer = _Child("latency-producer", path, "--count", str(count), "--rate", str(rate))
            sent = producer.result()
            got = consumer.result()
        finally:
            consumer.kill()
            if producer is not None:
                producer.kill()
    if got["received"] != count:
        raise RuntimeError(f"latency: received {got['received']} of {count} events")
    return Run(
        sent["seconds"],
        got["cpu_seconds"],
        p50_ms=got["p50_ms"],
        p99_ms=got["p99_ms"],
        child_rss_mib=max(sent["rss_mib"], got["rss_mib"]),
        note=f"{count:,} events at {rate:,.0f}/s; max {got['max_ms']:.1f} ms; "
        f"producer sent them in {sent['seconds']:.2f}s",
    )


def idle(seconds: float) -> Run:
    """CPU time of a subscribed consumer process with nothing to consume."""
    with scratch_db() as path:
        create_topic(path)
        child = _Child("idle", path, "--seconds", str(seconds))
        try:
            got = child.result()
        finally:
            child.kill()
    return Run(
        got["seconds"],
        got["cpu_seconds"],
        child_rss_mib=got["rss_mib"],
        note=f"wake-ups/s: event loop thread {got['main_wakeups']:,.0f}, "
        f"other threads {got['other_wakeups']:,.0f} (voluntary context switches)",
    )


# -- the children ----------------------------------------------------------------------


def _report(**values: Any) -> None:
    print(json.dumps({**values, "rss_mib": peak_rss_mib()}), flush=True)


def _member(path: str, heartbeat: float | None, exactly_once: bool) -> None:
    """A group member: joins on "go", consumes until SIGUSR1, then drains and leaves."""
    from tidings import App

    options = {} if heartbeat is None else {"heartbeat": heartbeat}
    app = App(f"bench-member-{os.getpid()}", broker=url(path, **options))
    handled = 0

    async def on_tick(data: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1

    async def on_tick_once(data: dict[str, Any], ctx: Context) -> None:
        nonlocal handled
        await asyncio.sleep(0.0005)
        ctx.emit(data, type="TickSeen", topic=f"{TOPIC}.seen")
        handled += 1

    if exactly_once:
        app.add_subscription(
            on_tick_once,
            TOPIC,
            group=GROUP,
            name="bench.member",
            delivery="exactly_once",
            concurrency=4,
        )
    else:
        app.add_subscription(on_tick, TOPIC, group=GROUP, name="bench.member")
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    used = 0.0

    async def serve() -> None:
        stop = asyncio.Event()

        def on_stop() -> None:
            # CPU time up to the parent's "done", not the graceful stop after it.
            nonlocal used
            used = time.process_time() - cpu
            stop.set()

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_stop)
        await app.serve(stop)

    asyncio.run(serve())
    _report(handled=handled, cpu_seconds=used)


async def _latency_consumer(path: str, count: int) -> None:
    from tidings import App

    app = App("bench-latency-consumer", broker=url(path))
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_tick(data: dict[str, Any]) -> None:
        now = time.time()
        if data["n"] >= 0:
            latencies.append(now - data["sent"])
            if len(latencies) == count:
                done.set()

    app.add_subscription(on_tick, TOPIC, group=GROUP)
    await app.start()
    print("ready", flush=True)
    cpu = time.process_time()
    try:
        await asyncio.wait_for(done.wait(), _TIMEOUT)
    finally:
        await app.stop()
    ordered = sorted(latencies)
    _report(
        received=len(ordered),
        p50_ms=percentile(ordered, 0.50) * 1e3,
        p99_ms=percentile(ordered, 0.99) * 1e3,
        max_ms=ordered[-1] * 1e3,
        cpu_seconds=time.process_time() - cpu,
    )


async def _latency_producer(path: str, count: int, rate: float) -> None:
    """Publish ``count`` events on schedule (event ``i`` at ``start + i / rate``)."""
    from tidings import App

    app = App("bench-latency-producer", broker=url(path))
    publish = app.publish
    # Connects and resolves the topic; the consumer skips it.
    await publish({"n": -1, "sent": time.time()}, topic=TOPIC, type=EVENT_TYPE, key=KEYS[0])
    start = time.perf_counter()
    i = 0
    try:
        while i < count:
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            data = {"n": i, "sent": time.time()}
            await publish(data, topic=TOPIC, type=EVENT_TYPE, key=KEYS[i % len(KEYS)])
            i += 1
        seconds = time.perf_counter() - start
    finally:
        await app.stop()
    _report(seconds=seconds)


async def _idle(path: str, seconds: float) -> None:
    from tidings import App

    app = App("bench-idle", broker=url(path))

    async def on_tick(data: dict[str, Any]) -> None:
        raise RuntimeError("the idle benchmark publishes nothing")

    app.add_subscription(on_tick, TOPIC, group=GROUP)
    await app.start()
    try:
        await asyncio.sleep(0.5)  # past the join and its first heartbeat
        # process_time: CPU time of all threads, like os.times() but to the nanosecond.
        before, switches, start = time.process_time(), _wakeups(), time.perf_counter()
        await asyncio.sleep(seconds)
        after, wall = time.process_time(), time.perf_counter() - start
        woken = {tid: count - switches.get(tid, 0) for tid, count in _wakeups().items()}
    finally:
        await app.stop()
    cpu = after - before
    main = woken.pop(os.getpid(), 0)
    _report(
        seconds=wall,
        cpu_seconds=cpu,
        main_wakeups=main / wall,
        other_wakeups=sum(woken.values()) / wall,
    )


def _wakeups() -> dict[int, int]:
    """Voluntary context switches (about: wake-ups) of each thread of this process (Linux)."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[int(tid)] = int(line.split()[1])
        except OSError:
            continue
    return out


def _child(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A child process of the sqlite benchmark.")
    parser.add_argument("role", choices=["member", "latency-consumer", "latency-producer", "idle"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--exactly-once", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "member":
        _member(args.db, args.heartbeat, args.exactly_once)
    elif args.role == "latency-consumer":
        asyncio.run(_latency_consumer(args.db, args.count))
    elif args.role == "latency-producer":
        asyncio.run(_latency_producer(args.db, args.count, args.rate))
    else:
        asyncio.run(_idle(args.db, args.seconds))


if __name__ == "__main__":
    _child()
