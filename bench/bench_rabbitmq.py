"""RabbitMQ: tidings against raw aio-pika and FastStream, in one run.

Uses a running RabbitMQ (``--url``, default the local one with guest/guest; the
project's machines and CI start it with ``rabbitmq-server -detached``), runs
every case of ``_rabbitmq_cases.py`` one after the other against it, prints one
table with events/s and the ratios against the targets. Each case declares
exchanges and queues of its own (``bench-<run>-...``) and deletes them.
Everything is durable: quorum queues, persistent messages, publisher confirms.

    python bench/bench_rabbitmq.py [--events N] [--only SUBSTRING] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from _rabbitmq_cases import BATCH, BATCH_PREFETCH, CASES, CHUNK, PREFETCH
from bench_nats import _run, print_rates

__all__ = ["main"]

URL = "amqp://guest:guest@127.0.0.1:5672/"

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    ("tidings publish, one at a time", "raw aio-pika publish + confirm, one at a time", 0.8),
    (
        f"tidings publish_batch ({CHUNK})",
        f"raw aio-pika publish, confirms per batch ({CHUNK})",
        0.8,
    ),
    ("tidings consume, per-event handler", "raw aio-pika consume, ack each", 0.8),
    (
        "tidings consume, batch handler (ordering none)",
        f"raw aio-pika consume, ack multiple per {BATCH}",
        0.8,
    ),
    ("tidings consume, per-event handler", "FastStream subscriber (quorum queue)", 2.0),
    ("tidings publish, one at a time", "FastStream publish, one at a time", 2.0),
]


def _reachable(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError:
        raise SystemExit(
            f"no RabbitMQ at {host}:{port} (start one: rabbitmq-server -detached)"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--url", default=URL, help="the RabbitMQ server (%(default)s)")
    args = parser.parse_args(argv)
    _reachable(args.url)
    rates = asyncio.run(_run(args.url, args.events, args.only, CASES))
    note = (
        "Durable everywhere: quorum queues, persistent messages, publisher confirms. Consume "
        f"cases: prefetch {PREFETCH} per partition channel (batch cases: {BATCH_PREFETCH}, "
        f"tidings batch_size {BATCH}); each ends when the last ack is written."
    )
    title = f"RabbitMQ, {args.events:,} events per case"
    failed = print_rates(title, rates, TARGETS, note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
