"""MQTT 5: tidings against the raw aiomqtt client, in one run.

Starts its own ``mosquitto`` on a free port (a temporary config: loopback,
anonymous, ``max_queued_messages 0``, so a session may hold a whole run, and
``set_tcp_nodelay true``, as docs/brokers/mqtt.md advises), runs
every case of ``_mqtt_cases.py`` one after the other against it, prints one
table with events/s and the ratios against the targets, and stops the server
by its PID. FastStream has no MQTT broker, so there is no FastStream row.

    python bench/bench_mqtt.py [--events N] [--only SUBSTRING]
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
from pathlib import Path

from _mqtt_cases import CASES, CHUNK, WINDOW
from bench_nats import _free_port, _run, _wait_for, print_rates

__all__ = ["main", "mosquitto"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    ("tidings publish, one at a time", "raw publish QoS 1, one at a time", 0.8),
    (f"tidings publish_batch ({CHUNK})", f"raw publish QoS 1, {CHUNK} in flight", 0.8),
    ("tidings consume, per-event handler (group)", "raw consume QoS 1 (shared, auto ack)", 0.8),
    ("tidings consume, batch handler (ordering none)", "raw consume QoS 1 (shared, auto ack)", 0.8),
]


@contextlib.contextmanager
def mosquitto(prefix: str) -> Iterator[str]:
    """``mosquitto`` on a free loopback port, unlimited queues, no Nagle; its ``mqtt://`` URL."""
    binary = shutil.which("mosquitto")
    if binary is None:
        raise SystemExit("no mosquitto on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        config = Path(directory) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 0\nmax_inflight_messages 0\npersistence false\n"
            "set_tcp_nodelay true\n"
        )
        server = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_for(port)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with mosquitto("bench-mqtt-") as url:
        rates = asyncio.run(_run(url, args.events, args.only, CASES))
    note = (
        f"Consume cases: the subscriber is connected and holds back (tidings: a gated handler, "
        f"receive_maximum={WINDOW}; raw: an offline persistent session) while {args.events:,} "
        "events are published; the clock runs from release to the last event handled. "
        "FastStream has no MQTT broker: no FastStream rows."
    )
    title = f"MQTT 5 (mosquitto), {args.events:,} events per case, QoS 1"
    failed = print_rates(title, rates, TARGETS, note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
