"""Redis Streams: tidings against raw redis-py and FastStream, in one run.

Starts its own ``redis-server`` on a free port (no persistence, a temporary
directory), runs every case of ``_redis_cases.py`` one after the other against
it, prints one table with events/s and the ratios against the targets, and
stops the server by its PID.

    python bench/bench_redis.py [--events N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

from _redis_cases import CASES, READ_COUNT
from bench_nats import _free_port, _run, _wait_for, verdict_table
from rich.console import Console
from rich.table import Table

__all__ = ["main", "redis_server"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    ("tidings publish, one at a time", "raw XADD, one at a time", 0.8),
    # The same script call through bare redis-py: what tidings' own code costs on top.
    ("tidings publish, one at a time", "raw EVALSHA of the publish script, one at a time", 0.8),
    ("tidings publish_batch (1000)", "raw XADD, pipelined (1000)", 0.8),
    ("tidings consume, per-event handler", "raw XREADGROUP + XACK each", 0.8),
    ("tidings consume, batch handler (ordering none)", "raw XREADGROUP + XACK per batch", 0.8),
    ("tidings consume, per-event handler", "FastStream stream subscriber (group)", 2.0),
    ("tidings publish, one at a time", "FastStream publish, one at a time", 2.0),
]


@contextlib.contextmanager
def redis_server(prefix: str) -> Iterator[str]:
    """``redis-server`` on a free port without persistence, in a temporary directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with redis_server("bench-redis-") as url:
        rates = asyncio.run(_run(url, args.events, args.only, CASES))
    table = Table(
        title=f"Redis Streams, {args.events:,} events per case (raw reads: {READ_COUNT} a call)"
    )
    table.add_column("case")
    table.add_column("events/s", justify="right")
    for label, rate in rates.items():
        table.add_row(label, f"{rate:,.0f}")
    verdicts, failed = verdict_table(rates, TARGETS)
    console = Console()
    console.print(table)
    console.print(verdicts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
