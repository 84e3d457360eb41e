"""Google Cloud Pub/Sub: tidings against the raw google-cloud-pubsub client, on the emulator.

Starts Google's Pub/Sub emulator (``gcloud beta emulators pubsub start``) on a
free port in a process group of its own, runs every case of
``_pubsub_cases.py`` one after the other against it, prints one table with
events/s and the ratios against the targets, and stops the emulator's group.
FastStream (0.7.8) has no Pub/Sub broker (Kafka, Confluent, RabbitMQ, NATS,
Redis and MQTT only), so there is no FastStream row.

    python bench/bench_pubsub.py [--events N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

from _pubsub_cases import CASES, CHUNK, PROJECT, PULL
from bench_nats import _free_port, _run, _wait_for, print_rates

__all__ = ["emulator", "main"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    (f"tidings publish_batch ({CHUNK} per call)", f"raw Publish ({CHUNK} per request)", 0.8),
    (
        "tidings consume, per-event handler (group, ordering keys)",
        f"raw consume (pull {PULL}, ack per pull, 2 in flight)",
        0.8,
    ),
]


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    """The Pub/Sub emulator on a free loopback port; the ``gcppubsub://`` URL of it."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise SystemExit("gcloud is not installed (the Pub/Sub emulator comes with it)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as data:
        server = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
             f"--data-dir={data}", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for(port, 60.0)
            yield f"gcppubsub://{PROJECT}?emulator=127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with emulator() as url:
        rates = asyncio.run(_run(url, args.events, args.only, CASES))
    note = (
        f"{args.events:,} events per case, 64 ordering keys. Consume cases read a backlog from "
        "a subscription with message ordering. The emulator, not Google's service: the figures "
        "compare the client paths, not the service. FastStream has no Pub/Sub broker: no "
        "FastStream rows."
    )
    failed = print_rates(
        "Google Cloud Pub/Sub (emulator), CloudEvents binary mode", rates, TARGETS, note
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
