"""An inherited redelivery is handed out after later events of its key (sqlite).

``python -m tests.chaos.repros.inherited_retry_order`` prints what three
successive owners of a one-partition topic fetch:

A  stops gracefully: e0, e1, e2 (one key) were fetched, never started, and are
   released (App.stop does this: ``release_unstarted``): retries rows, due t0.
B  hands out e0 and records its start (``begin``: the row of e0 is rewritten
   with due t1 > t0), then is killed before finishing.
C  after B's session timed out: pending redeliveries come out in (due, offset)
   order, so e1 and e2 (due t0) come before e0 (due t1). Key order is broken:
   C prints e1, e2, e0 where e0, e1, e2 is right.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile

from tidings.broker import CountsAttempts, Message, Releasable
from tidings.brokers.sqlite import SqliteBroker


async def stage(url: str, name: str) -> None:
    broker = SqliteBroker.from_url(url)
    await broker.connect()
    if name == "A":
        await broker.publish("t", [Message(f"e{i}".encode(), key="k") for i in range(3)])
    subscription = await broker.subscribe(["t"], "g")
    got = await subscription.fetch(10, 5.0)
    print(name, "fetched", [(d.value.decode(), d.attempt) for d in got], flush=True)
    if name == "A":
        for delivery in got:
            assert isinstance(delivery, Releasable)
            await delivery.release()
        await subscription.close()
        await broker.close()
    elif name == "B":
        assert isinstance(got[0], CountsAttempts)
        written = got[0].begin()
        if written is not None:
            await written
        os.kill(os.getpid(), signal.SIGKILL)  # dies while handling e0


def main() -> None:
    db = os.path.join(tempfile.mkdtemp(), "repro.db")
    url = f"sqlite:///{db}?partitions=1&session_timeout=1&heartbeat=0.2"
    for name in ("A", "B", "C"):
        subprocess.run([sys.executable, "-m", __spec__.name, url, name], check=False)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        asyncio.run(stage(sys.argv[1], sys.argv[2]))
    else:
        main()
