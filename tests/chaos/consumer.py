"""The consumer app, run as ``tidings run tests.chaos.consumer:app --broker URL``.

Configured by environment (set by the runner): ``CHAOS_TOPIC``,
``CHAOS_OUTPUT_TOPIC``, ``CHAOS_GROUP``, ``CHAOS_DELIVERY``, ``CHAOS_LOG``,
``CHAOS_CONCURRENCY``, ``CHAOS_WORK``. Every handling appends
``PRODUCER:n key attempt pid time_ns partition:offset`` to CHAOS_LOG before
the handler returns (line-buffered, so a kill loses no finished line). Under
exactly-once the handler also emits a ``ChaosEffect`` to the output topic:
the effect that must exist exactly once per input event.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from tidings import App, Context

__all__ = ["EFFECT_TYPE", "app", "build_app"]

EFFECT_TYPE = "ChaosEffect"


def build_app(env: Mapping[str, str]) -> App:
    try:
        topic, output, group = env["CHAOS_TOPIC"], env["CHAOS_OUTPUT_TOPIC"], env["CHAOS_GROUP"]
        delivery, log_path = env["CHAOS_DELIVERY"], env["CHAOS_LOG"]
    except KeyError as exc:
        raise RuntimeError(f"{exc} is not set: this app is started by the chaos runner") from None
    concurrency = int(env.get("CHAOS_CONCURRENCY", "4"))
    work = float(env.get("CHAOS_WORK", "0"))
    pid = os.getpid()
    app = App("chaos-consumer")
    app.route(EFFECT_TYPE, output)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def handle(data: dict[str, Any], ctx: Context) -> None:
        if work:
            await asyncio.sleep(work)
        event, key = f"{data['producer']}:{data['n']}", data["key"]
        log.write(
            f"{event} {key} {ctx.attempt} {pid} {time.time_ns()} {ctx.partition}:{ctx.offset}\n"
        )
        if delivery == "exactly_once":
            ctx.emit({"event": event, "key": key}, type=EFFECT_TYPE, partitionkey=key)

    app.add_subscription(
        handle,
        topic,
        group=group,
        delivery="exactly_once" if delivery == "exactly_once" else "at_least_once",
        concurrency=concurrency,
        name="chaos.handle",
    )
    return app


app = build_app(os.environ)
