"""``tidings tail --from-beginning`` misses and repeats events (sqlite, several publishers).

``python -m tests.chaos.repros.read_paging`` publishes 6000 events from three
broker clients at once (as three processes would), then counts what
``tidings tail --from-beginning --json`` prints. ``published_at`` is taken
before the write lock, so within a partition it is not monotonic in offset;
``read(after=..., limit=...)`` orders a page by ``published_at`` and cuts it at
``limit``, so a page is not a prefix of each partition, and a caller moving
each partition's position to the last offset it saw skips some messages and
reads others twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

from tidings import App

COUNT = 2000


async def publish(url: str, name: str) -> None:
    app = App(name, broker=url)
    for n in range(0, COUNT, 4):
        events = [
            app.event({"n": i, "by": name}, type="T", key=f"k{i % 7}") for i in range(n, n + 4)
        ]
        await app.publish_batch(events, topic="t")
    await app.stop()


def main() -> None:
    db = os.path.join(tempfile.mkdtemp(), "repro.db")
    url = f"sqlite:///{db}?partitions=4"

    async def publish_all() -> None:
        await asyncio.gather(*(publish(url, f"p{i}") for i in range(3)))

    asyncio.run(publish_all())
    command = [sys.executable, "-m", "tidings.cli", "tail", "t", "--from-beginning", "--json"]
    lines = subprocess.run(
        [*command, "--broker", url], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    with sqlite3.connect(db) as conn:
        (inversions,) = conn.execute(
            "SELECT COUNT(*) FROM messages a JOIN messages b ON a.topic_id = b.topic_id "
            "AND a.partition = b.partition AND b.offset = a.offset + 1 "
            "WHERE b.published_at < a.published_at"
        ).fetchone()
    print(
        f"stored {3 * COUNT}; tail printed {len(ids)} lines, {len(set(ids))} distinct events; "
        f"published_at inversions within partitions: {inversions}"
    )


if __name__ == "__main__":
    main()
