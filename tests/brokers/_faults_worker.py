"""The App the Redis and MQTT fault tests run with ``tidings run _faults_worker:app``
(and kill with -9).

Reads the topic and the log file from the environment; logs "seq attempt pid" per
handling, line-buffered, so a kill loses no line of a handling that finished.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tidings import App, Context

TOPIC = os.environ.get("FAULTS_TOPIC", "faults")
LOG = os.environ.get("FAULTS_LOG", os.devnull)

app = App(f"faults-{os.getpid()}")
_log = open(LOG, "a", buffering=1)  # noqa: SIM115 - lives with the process


@app.subscribe(TOPIC, group="faults", concurrency=8)
async def handle(data: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(0.01)  # slower than the producer: a backlog, so kills hit work
    _log.write(f"{data['seq']} {ctx.attempt} {os.getpid()}\n")
