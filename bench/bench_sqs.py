"""Amazon SNS/SQS: tidings against the raw aiobotocore client, on moto, in one run.

Starts its own moto server (``python -m moto.server``) on a free port, runs
every case of ``_sqs_cases.py`` one after the other against it, prints one
table with events/s and the ratios against the targets, and stops the server
by its PID. FastStream (0.7.8) has no SNS or SQS broker (Kafka, Confluent, RabbitMQ,
NATS, Redis and MQTT only), so there is no FastStream row.

    python bench/bench_sqs.py [--events N] [--consume-events N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence

from _sqs_cases import CASES, CHUNK
from bench_nats import _free_port, _run, _wait_for, print_rates

__all__ = ["main", "moto_server"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    (
        f"tidings publish_batch ({CHUNK} per call)",
        "raw publish_batch (10 per call, 16 in flight)",
        0.8,
    ),
    (
        "tidings consume, per-event handler (group)",
        "raw consume (receive 10, delete batch)",
        0.8,
    ),
]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free loopback port; the ``sns+sqs://`` URL of it."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, 30.0)
        yield f"sns+sqs://test:test@127.0.0.1:{port}?wait=1&receivers=1&publish_timeout=60"
    finally:
        server.terminate()
        server.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per publish case")
    parser.add_argument("--consume-events", type=int, default=2_000, help="events per consume case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with moto_server() as url:
        publish = {k: v for k, v in CASES.items() if "publish" in k}
        consume = {k: v for k, v in CASES.items() if "consume" in k}
        rates = asyncio.run(_run(url, args.events, args.only, publish))
        rates |= asyncio.run(_run(url, args.consume_events, args.only, consume))
    note = (
        f"Publish cases: {args.events:,} events to an SNS topic without subscribers. Consume "
        f"cases: {args.consume_events:,} events sent by one raw producer while the consumer "
        "reads (moto slows down with the length of a queue, so nothing is queued beforehand); "
        "one receive in flight on both sides (receivers=1). moto, not AWS: the figures compare "
        "the client paths, not the service. FastStream has no SNS/SQS broker: no FastStream "
        "rows."
    )
    title = "Amazon SNS/SQS (moto server), CloudEvents binary mode"
    failed = print_rates(title, rates, TARGETS, note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
