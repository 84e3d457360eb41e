"""The HTTP gateway under load: CloudEvents POSTed to a real ``tidings serve`` on loopback.

Two servers, one after the other, in the same run: ``tidings serve`` on the
embedded broker (``sqlite://``, durability full: every 202 is fsynced) and,
as the ceiling, a minimal Starlette app on the same uvicorn that reads the
body and answers 202 without touching a broker (``_gateway_ceiling.py``).
Each gets the same two loads from an aiohttp client with keep-alive
connections, for a fixed time each (bounded):

* single: one structured event per POST (``application/cloudevents+json``);
* batch: 100 events per POST (``application/cloudevents-batch+json``).

Prints requests/s, events/s and latency per case, the ratio to the
ceiling, and whether the targets are met (>= 3,000 single-event requests/s,
>= 50,000 events/s in batches). Afterwards it counts the events the broker
stored, which must equal those answered with 202.

    python bench/bench_gateway.py [--seconds S] [--connections N] [--only single|batch]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from tidings.brokers import from_url
from tidings.inspection import Inspectable, ReadOnly

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
BATCH = 100
#: (load, what is measured, minimum)
TARGETS = {"single": ("requests/s", 3_000.0), "batch": ("events/s", 50_000.0)}
_SINGLE = {"content-type": "application/cloudevents+json"}
_BATCH = {"content-type": "application/cloudevents-batch+json"}


@dataclass(frozen=True)
class Measured:
    server: str
    load: str
    requests: int
    events: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * share), len(ordered) - 1)] if ordered else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@contextmanager
def _server(command: list[str], port: int, cwd: Path) -> Iterator[None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_TOKEN"] = TOKEN
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for(port, process)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if process.returncode not in (0, -signal.SIGINT):
            print(err.decode(), file=sys.stderr)


def _event(number: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"bench-{number}",
        "source": "/bench",
        "type": "OrderPlaced",
        "partitionkey": f"order-{number % 64}",
        "data": {"order_id": f"order-{number % 64}", "amount": number % 1000, "currency": "EUR"},
    }


class _Bodies:
    """Request bodies with ids never used before, made by filling a template (cheap).

    The client shares the CPUs with the server: json.dumps of 100 events per
    request would measure the client.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.next = 0
        head, _, tail = json.dumps(_event(123456789)).partition("123456789")
        self._head, self._tail = head.encode(), tail.encode()

    def take(self) -> bytes:
        first, self.next = self.next, self.next + self.size
        if self.size == 1:
            return self._head + str(first).encode() + self._tail
        items = (self._head + str(first + i).encode() + self._tail for i in range(self.size))
        return b"[" + b",".join(items) + b"]"


async def _load(base: str, server: str, load: str, seconds: float, connections: int) -> Measured:
    size = 1 if load == "single" else BATCH
    headers = dict(_SINGLE if load == "single" else _BATCH)
    headers["authorization"] = f"Bearer {TOKEN}"
    bodies = _Bodies(size)
    latencies: list[float] = []
    sent = [0, 0, 0]  # requests, events, failures
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as session:

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                payload = bodies.take()
                started = time.perf_counter()
                async with session.post("/topics/bench/events", data=payload, headers=headers) as r:
                    await r.read()
                    ok = r.status == 202
                if record:
                    latencies.append(time.perf_counter() - started)
                    sent[0] += 1
                    sent[1] += size if ok else 0
                    sent[2] += 0 if ok else 1

        warm = time.perf_counter() + min(1.0, seconds / 5)
        await asyncio.gather(*(worker(warm, False) for _ in range(connections)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return Measured(server, load, sent[0], sent[1], elapsed, latencies, sent[2])


async def _stored(url: str) -> int:
    broker = from_url(url)
    assert isinstance(broker, Inspectable) and isinstance(broker, ReadOnly)
    broker.open_read_only()
    await broker.connect()
    try:
        return sum(t.events for t in await broker.list_topics() if t.name == "bench")
    finally:
        await broker.close()


def run(seconds: float, connections: int, loads: Sequence[str]) -> list[Measured]:
    results: list[Measured] = []
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        ceiling = [python, "-m", "uvicorn", "_gateway_ceiling:app", "--port", str(port)]
        ceiling += ["--log-level", "warning", "--no-access-log"]
        with _server(ceiling, port, HERE):
            for load in loads:
                results.append(
                    asyncio.run(
                        _load(f"http://127.0.0.1:{port}", "ceiling", load, seconds, connections)
                    )
                )
        url = f"sqlite:///{Path(folder) / 'gateway.db'}?durability=full"
        port = _free_port()
        serve = [python, "-m", "tidings.cli", "serve", "--broker", url, "--port", str(port)]
        with _server(serve, port, Path(folder)):
            for load in loads:
                measured = asyncio.run(
                    _load(f"http://127.0.0.1:{port}", "tidings serve", load, seconds, connections)
                )
                results.append(measured)
        stored = asyncio.run(_stored(url))
        # The warm-up's events are stored too: nothing answered 202 may be missing.
        accepted = sum(m.events for m in results if m.server == "tidings serve")
        if stored < accepted:
            raise SystemExit(
                f"the broker stored {stored} events, fewer than {accepted} answered 202"
            )
    return results


def print_table(results: Sequence[Measured], connections: int) -> bool:
    table = Table(title=f"HTTP gateway on loopback ({connections} keep-alive connections)")
    for column in ("server", "load", "requests/s", "events/s", "p50 ms", "p99 ms", "failed"):
        table.add_column(column, justify="left" if column in ("server", "load") else "right")
    table.add_column("of ceiling", justify="right")
    table.add_column("target", justify="right")
    ceilings = {m.load: m for m in results if m.server == "ceiling"}
    met = True
    for m in results:
        ratio = target = ""
        if m.server != "ceiling":
            base = ceilings.get(m.load)
            if base is not None:
                ratio = f"{m.requests_per_second / base.requests_per_second:.0%}"
            measure, minimum = TARGETS[m.load]
            value = m.requests_per_second if measure == "requests/s" else m.events_per_second
            ok = value >= minimum and not m.failures
            met &= ok
            target = f"{'met' if ok else 'MISSED'} (>= {minimum:,.0f} {measure})"
        table.add_row(
            m.server,
            m.load if m.load == "single" else f"batch of {BATCH}",
            f"{m.requests_per_second:,.0f}",
            f"{m.events_per_second:,.0f}",
            f"{m.percentile(0.5) * 1000:.1f}",
            f"{m.percentile(0.99) * 1000:.1f}",
            str(m.failures),
            ratio,
            target,
        )
    Console(width=200).print(table)
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per case")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--only", choices=["single", "batch"], help="one load only")
    args = parser.parse_args(argv)
    loads = [args.only] if args.only else ["single", "batch"]
    results = run(args.seconds, args.connections, loads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if print_table(results, args.connections) else 1


if __name__ == "__main__":
    sys.exit(main())
