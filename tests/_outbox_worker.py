"""A process for the outbox and inbox fault tests, killed with SIGKILL by them or by itself.

``python _outbox_worker.py relay``: a :class:`Relay` from ``OUTBOX_DB`` to
``OUTBOX_BROKER`` (name ``OUTBOX_NAME``, lease ``OUTBOX_TTL``); with
``KILL_AFTER_PUBLISH=n`` it kills itself after publishing its n-th batch,
before marking it sent.

``python _outbox_worker.py consumer``: an App on ``OUTBOX_BROKER`` handling
``OUTBOX_TOPIC`` exactly once through an :class:`Inbox` on ``OUTBOX_DB``; each
event inserts its ``seq`` into ``effects`` and emits one follow-up.
``KILL_AFTER_COMMIT=seq`` kills it after that event's commit, before its ack;
``KILL_IN_HANDLER=seq`` after that event's effect, before the commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from tidings import App, Context, Event
from tidings.broker import Message
from tidings.outbox import Inbox, Relay

DB = os.environ["OUTBOX_DB"]
BROKER = os.environ["OUTBOX_BROKER"]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingRelay(Relay):
    batches = 0

    async def _publish(self, rows: Sequence[Any], published: list[int]) -> None:
        await super()._publish(rows, published)
        self.batches += 1
        if self.batches == int(os.environ.get("KILL_AFTER_PUBLISH", "0")):
            die()  # published, not marked sent


class KillingInbox(Inbox):
    async def store(self, opened: Any, outputs: Sequence[tuple[str, Message]]) -> None:
        await super().store(opened, outputs)
        seq = json.loads(outputs[0][1].value)["data"]["seq"]  # the follow-up's
        if seq == int(os.environ.get("KILL_AFTER_COMMIT", "-1")):
            die()  # committed, not acked


async def relay() -> None:
    worker = KillingRelay(
        DB,
        BROKER,
        name=os.environ["OUTBOX_NAME"],
        lease_ttl=float(os.environ.get("OUTBOX_TTL", "2")),
        batch_size=50,
        poll_interval=0.05,
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    await worker.run()


async def consumer() -> None:
    app = App("effects", broker=BROKER, exactly_once=KillingInbox(DB))
    kill_in_handler = int(os.environ.get("KILL_IN_HANDLER", "-1"))

    @app.subscribe(os.environ["OUTBOX_TOPIC"], group="effects", delivery="exactly_once")
    async def handle(event: Event, ctx: Context) -> None:
        seq = event.data["seq"]
        await ctx.transaction.execute("INSERT INTO effects (seq) VALUES ($1)", seq)
        if seq == kill_in_handler:
            die()  # the effect is written, not committed
        ctx.emit({"seq": seq}, type="Done", topic=os.environ["OUTBOX_TOPIC"] + ".done")

    await app.serve()


if __name__ == "__main__":
    asyncio.run(relay() if sys.argv[1] == "relay" else consumer())
