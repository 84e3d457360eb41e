"""``/dlq``, ``/events/{id}`` and ``/trace/{id}`` on an embedded broker with real dead letters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tidings
from test_gateway import serving
from tidings import App, Context, Reject
from tidings.broker import Message
from tidings.brokers import from_url
from tidings.inspection import Inspectable


async def _make_dead_letters(url: str) -> dict[int, str]:
    """Billing rejects odd orders (3 dead letters), invoices even ones; plus one poison message.

    Returns the ids of the orders by number.
    """
    app = App("shop", broker=f"{url}?heartbeat=0.2")

    @app.subscribe("orders", group="billing")
    async def bill(data: dict[str, Any], ctx: Context) -> None:
        if data["n"] % 2:
            raise Reject(f"order {data['n']} is odd")
        ctx.emit({"n": data["n"]}, topic="invoices", type="Invoiced")

    ids = {}
    async with app:
        for n in range(6):
            event = await app.publish({"n": n}, topic="orders", type="OrderPlaced", key=f"k{n}")
            ids[n] = event.id
        await app.broker.publish("orders", [Message(b"\x00poison", key="p")])
        broker = app.broker
        assert isinstance(broker, Inspectable)
        while len(await broker.read("orders.dlq")) < 4:  # noqa: ASYNC110 - the app's consumer
            await asyncio.sleep(0.02)
        while len(await broker.read("invoices")) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return ids


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[tuple[str, dict[int, str], httpx.AsyncClient]]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    ids = await _make_dead_letters(url)
    async for client in serving(url):
        yield url, ids, client


async def test_dlq_lists_queues_and_letters_and_shows_one(
    scene: tuple[str, dict[int, str], httpx.AsyncClient],
) -> None:
    _, ids, client = scene
    queues = (await client.get("/dlq")).json()["queues"]
    assert [(q["topic"], q["origin"], q["dead_letters"]) for q in queues] == [
        ("orders.dlq", "orders", 4)
    ]
    for name in ("orders", "orders.dlq"):
        body = (await client.get(f"/dlq/{name}")).json()
        assert body["topic"] == "orders.dlq"
        assert len(body["dead_letters"]) == 4
    letters = body["dead_letters"]
    rejected = [x for x in letters if "event" in x]
    assert sorted(x["event"]["id"] for x in rejected) == sorted(ids[n] for n in (1, 3, 5))
    record = rejected[0]["dead_letter"]
    assert record["error_type"] == "tidings.errors.Reject"
    assert record["origin_topic"] == "orders" and record["origin_group"] == "billing"
    (poison,) = [x for x in letters if "poison" in x]
    assert poison["value"] == "\x00poison"
    assert len((await client.get("/dlq/orders?limit=2")).json()["dead_letters"]) == 2

    first = rejected[0]
    shown = await client.get(f"/dlq/orders/{first['offset']}?partition={first['partition']}")
    assert shown.status_code == 200 and shown.json() == first

    missing = await client.get("/dlq/orders/99?partition=0")
    assert missing.status_code == 404
    assert "no dead letter at partition 0, offset 99 in orders.dlq" in missing.json()["error"]
    assert (await client.get("/dlq/orders/0?partition=x")).status_code == 400
    beyond = await client.get("/dlq/orders/0?partition=99")
    assert beyond.status_code == 400 and "has partitions 0-" in beyond.json()["error"]
    assert (await client.get("/dlq/orders/-1")).status_code == 404  # not an offset: no route
    unknown = await client.get("/dlq/nope")
    assert unknown.status_code == 404
    assert "no topic 'nope' and no dead-letter topic 'nope.dlq'" in unknown.json()["error"]
    empty = await client.get("/dlq/invoices")
    assert empty.json() == {"topic": "invoices.dlq", "dead_letters": []}


async def test_dlq_redrive_and_purge(scene: tuple[str, dict[int, str], httpx.AsyncClient]) -> None:
    url, _, client = scene
    broker = from_url(url)
    assert isinstance(broker, Inspectable)
    await broker.connect()
    try:  # a message without a dead-letter record: redrive leaves it, purge deletes it
        await broker.publish("orders.dlq", [Message(b"stray", key="s")])
        one = await client.post("/dlq/orders/redrive?limit=1")
        assert one.json() == {"topic": "orders.dlq", "redriven": 1, "skipped": 0}
        assert (await client.get("/dlq")).json()["queues"][0]["dead_letters"] == 4
        rest = await client.post("/dlq/orders.dlq/redrive")
        assert rest.json() == {"topic": "orders.dlq", "redriven": 3, "skipped": 1}
        assert len(await broker.read("orders")) == 7 + 4  # stored in orders again
    finally:
        await broker.close()
    assert (await client.post("/dlq/orders/redrive?limit=0")).status_code == 400
    purged = await client.post("/dlq/orders/purge")
    assert purged.json() == {"topic": "orders.dlq", "deleted": 1}
    assert (await client.get("/dlq/orders")).json()["dead_letters"] == []
    nothing = await client.post("/dlq/invoices/redrive")
    assert nothing.json() == {"topic": "invoices.dlq", "redriven": 0, "skipped": 0}
    assert (await client.post("/dlq/nope/purge")).status_code == 404
    assert (await client.get("/dlq/orders/redrive")).status_code == 405


async def test_events_finds_an_event_by_id_in_the_topics_of_events(
    scene: tuple[str, dict[int, str], httpx.AsyncClient],
) -> None:
    _, ids, client = scene
    response = await client.get(f"/events/{ids[2]}")
    assert response.status_code == 200
    found = response.json()
    assert found["event"]["id"] == ids[2] and found["event"]["data"] == {"n": 2}
    (place,) = found["stored"]
    assert place["topic"] == "orders" and {"partition", "offset", "stored_at"} <= set(place)
    # A dead-lettered event is stored in orders.dlq too; the search leaves .dlq topics out
    # unless ?topic= names one.
    assert [p["topic"] for p in (await client.get(f"/events/{ids[1]}")).json()["stored"]] == [
        "orders"
    ]
    in_dlq = await client.get(f"/events/{ids[1]}?topic=orders.dlq")
    assert [p["topic"] for p in in_dlq.json()["stored"]] == ["orders.dlq"]
    elsewhere = await client.get(f"/events/{ids[2]}?topic=invoices")
    assert elsewhere.status_code == 404 and "in topic 'invoices'" in elsewhere.json()["error"]
    assert (await client.get(f"/events/{ids[2]}?topic=nope")).status_code == 404
    assert (await client.get("/events/no-such-id")).status_code == 404


def _cli_trace(wanted: str, url: str, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    source = str(Path(tidings.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (source, env.get("PYTHONPATH"))))
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "trace", wanted, "--json", "--broker", url],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


async def test_trace_answers_what_tidings_trace_json_prints(
    scene: tuple[str, dict[int, str], httpx.AsyncClient], tmp_path: Path
) -> None:
    url, ids, client = scene
    for n in (2, 3):
        response = await client.get(f"/trace/{ids[n]}")
        assert response.status_code == 200
        printed = await asyncio.to_thread(_cli_trace, ids[n], url, tmp_path)
        assert response.json() == printed
    invoiced = response.json()
    even = (await client.get(f"/trace/{ids[2]}")).json()
    assert even["types"] == ["Invoiced", "OrderPlaced"]
    (root,) = even["roots"]
    assert [child["type"] for child in root["children"]] == ["Invoiced"]
    ((odd_handling,),) = [node["handlings"] for node in invoiced["roots"]]
    assert odd_handling["outcome"] == "dead_lettered"
    missing = await client.get("/trace/no-such-id")
    assert missing.status_code == 404
    assert "no event with id or correlation id 'no-such-id'" in missing.json()["error"]
