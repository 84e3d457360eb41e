"""An App for the Kafka fault tests, served by ``tidings run kafka_worker:app --broker URL``.

Environment: KAFKA_FAULTS_TOPIC (read), KAFKA_FAULTS_LOG (one line "seq attempt pid"
appended per handling, line-buffered so a SIGKILL loses no finished line).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tidings import App, Context

app = App(f"kafka-worker-{os.getpid()}")
_log = open(os.environ["KAFKA_FAULTS_LOG"], "a", buffering=1)  # noqa: SIM115 - lives with the process


@app.subscribe(os.environ["KAFKA_FAULTS_TOPIC"], group="faults", concurrency=4)
async def handle(data: dict[str, Any], ctx: Context) -> None:
    await asyncio.sleep(0.002)
    _log.write(f"{data['seq']} {ctx.attempt} {os.getpid()}\n")
