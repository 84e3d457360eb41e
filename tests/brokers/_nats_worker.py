"""The App the NATS fault tests run with ``tidings run _nats_worker:app`` (and kill with -9).

Reads the topic and the log file from the environment; logs "seq attempt pid" per
handling, line-buffered, so a kill loses no line of a handling that finished.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tidings import App, Context

TOPIC = os.environ.get("NATS_FAULTS_TOPIC", "faults")
LOG = os.environ.get("NATS_FAULTS_LOG", os.devnull)

app = App(f"nats-faults-{os.getpid()}")
_log = open(LOG, "a", buffering=1)  # noqa: SIM115 - lives with the process


@app.subscribe(TOPIC, group="faults", concurrency=8, ack_wait=3.0)
async def handle(data: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(0.001)
    _log.write(f"{data['seq']} {ctx.attempt} {os.getpid()}\n")
