"""STOMP: tidings against the raw stomp.py client (and its own framing), on RabbitMQ.

Uses the running RabbitMQ's STOMP plugin (``rabbitmq-plugins enable rabbitmq_stomp``).
With its management API reachable, the run gets a vhost of its own, deleted at the
end with every queue the cases made; else the cases run on the URL's vhost and leave
their ``bench-...`` queues behind. Runs every case of ``_stomp_cases.py`` one after
the other and prints one table with events/s and the ratios against the targets.
FastStream has no STOMP broker (the third-party faststream-stomp is not FastStream's
own), so there is no FastStream row.

    python bench/bench_stomp.py [--events N] [--url stomp://...] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from _stomp_cases import CASES, CHUNK
from bench_nats import _run, print_rates

__all__ = ["main"]

#: (case, baseline, minimum ratio): what tidings must reach.
TARGETS = [
    (
        "tidings publish, one at a time",
        "raw stomp.py publish, receipt awaited per event",
        0.8,
    ),
    (
        f"tidings publish_batch ({CHUNK})",
        f"raw stomp.py publish, receipts awaited per {CHUNK}",
        0.8,
    ),
    ("tidings consume, per-event handler", "raw stomp.py consume, ACK each", 0.8),
]


def _management(base: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@contextlib.contextmanager
def own_vhost(url: str, management: str) -> Iterator[str]:
    """``url`` on a fresh vhost (guest), deleted afterwards; ``url`` itself without the API."""
    name = f"bench-stomp-{uuid.uuid4().hex[:8]}"
    try:
        _management(management, "PUT", f"/api/vhosts/{name}")
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        _management(management, "PUT", f"/api/permissions/{name}/guest", permissions)
    except OSError:
        yield url
        return
    try:
        parts = urlsplit(url)
        yield f"{parts.scheme}://{parts.netloc}/{name}"
    finally:
        _management(management, "DELETE", f"/api/vhosts/{name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per case")
    parser.add_argument("--url", default="stomp://guest:guest@127.0.0.1:61613/")
    parser.add_argument("--management", default="http://127.0.0.1:15672")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    with own_vhost(args.url, args.management) as url:
        rates = asyncio.run(_run(url, args.events, args.only, CASES))
    note = (
        f"{args.events:,} events per case, CloudEvents binary mode, 64 keys; every publish "
        "waits for RabbitMQ's RECEIPT (sent once the message is confirmed). Consume cases "
        "read a durable quorum queue filled beforehand (untimed), prefetch-count 256, one ACK "
        "per event. FastStream has no STOMP broker: no FastStream rows."
    )
    failed = print_rates("STOMP (RabbitMQ 3.10 STOMP plugin)", rates, TARGETS, note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
