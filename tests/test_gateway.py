from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tidings
from test_cli import _env, _start, _stop
from tidings.broker import Message, SubscribeOptions
from tidings.brokers import from_url
from tidings.codec import Codec
from tidings.gateway import create_app
from tidings.gateway._state import Gateway
from tidings.gateway.app import Settings
from tidings.inspection import Inspectable, StoredMessage
from tidings.positions import head, since

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import free_port, wait_for_port

TOKEN = "test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def cloudevent(number: int, **extra: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e-{number}",
        "source": "/tests",
        "type": "OrderPlaced",
        "data": {"number": number},
        **extra,
    }


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


async def serving(
    url: str, settings: Settings | None = None, headers: dict[str, str] = AUTH
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway in this process, sending the token unless ``headers`` is {}."""
    app = create_app(url, settings or Settings(token=TOKEN, poll_interval=0.02, heartbeat=0.05))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serving(url):
        yield client


async def stored(url: str, topic: str) -> list[StoredMessage]:
    broker = from_url(url)
    assert isinstance(broker, Inspectable)
    await broker.connect()
    try:
        return await broker.read(topic)
    finally:
        await broker.close()


def events_of(records: list[StoredMessage]) -> dict[str, tuple[StoredMessage, tidings.Event]]:
    codec = Codec()
    out = {}
    for record in records:
        event = codec.decode(record.message.value, record.message.headers)
        out[event.id] = (record, event)
    return out


async def test_structured_event_is_stored_and_answered_with_202(
    client: httpx.AsyncClient, url: str
) -> None:
    body = json.dumps(cloudevent(1, partitionkey="order-1"))
    response = await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
    assert response.status_code == 202
    assert response.json() == {"topic": "orders", "ids": ["e-1"]}
    (record, event) = events_of(await stored(url, "orders"))["e-1"]
    assert event.type == "OrderPlaced" and event.data == {"number": 1}
    assert record.message.key == "order-1"


async def test_binary_mode_takes_ce_headers_and_any_body(
    client: httpx.AsyncClient, url: str
) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "/tests",
        "ce-type": "Note",
        "ce-subject": "caf%C3%A9",
        "content-type": "text/plain; charset=utf-8",
    }
    response = await client.post("/topics/notes/events", content="hello", headers=headers)
    assert response.status_code == 202, response.text
    (_, event) = events_of(await stored(url, "notes"))["bin-1"]
    assert event.data == "hello"
    assert event.subject == "café"
    assert event.datacontenttype == "text/plain; charset=utf-8"


async def test_batch_mode_stores_every_event(client: httpx.AsyncClient, url: str) -> None:
    body = json.dumps([cloudevent(n) for n in range(3)])
    response = await client.post("/topics/orders/events", content=body, headers=BATCH)
    assert response.status_code == 202
    assert response.json()["ids"] == ["e-0", "e-1", "e-2"]
    assert set(events_of(await stored(url, "orders"))) == {"e-0", "e-1", "e-2"}


async def test_key_query_parameter_keys_events_without_a_partitionkey(
    client: httpx.AsyncClient, url: str
) -> None:
    body = json.dumps([cloudevent(1), cloudevent(2, partitionkey="own")])
    response = await client.post("/topics/orders/events?key=k-7", content=body, headers=BATCH)
    assert response.status_code == 202
    found = events_of(await stored(url, "orders"))
    assert found["e-1"][0].message.key == "k-7"
    assert found["e-2"][0].message.key == "own"


async def test_invalid_event_is_400_naming_what_is_wrong(client: httpx.AsyncClient) -> None:
    event = cloudevent(1)
    del event["type"]
    response = await client.post(
        "/topics/orders/events", content=json.dumps(event), headers=STRUCTURED
    )
    assert response.status_code == 400
    assert "'type'" in response.json()["error"]
    batch = json.dumps([cloudevent(1), {"specversion": "0.3"}])
    response = await client.post("/topics/orders/events", content=batch, headers=BATCH)
    assert response.status_code == 400
    assert "batch item 1" in response.json()["error"]


async def test_invalid_topic_name_is_400(client: httpx.AsyncClient) -> None:
    body = json.dumps(cloudevent(1))
    response = await client.post("/topics/a%20b/events", content=body, headers=STRUCTURED)
    assert response.status_code == 400
    assert "invalid topic name" in response.json()["error"]


async def test_unsupported_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/topics/orders/events", content="hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "ce-specversion" in response.json()["error"]


async def test_body_over_the_limit_is_413(url: str) -> None:
    async for client in serving(url, Settings(token=TOKEN, max_body_size=100)):
        body = json.dumps(cloudevent(1, data="x" * 200))
        response = await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
        assert response.status_code == 413
        assert "100 bytes" in response.json()["error"]


async def test_topics_and_groups_as_json(client: httpx.AsyncClient, url: str) -> None:
    body = json.dumps([cloudevent(n, partitionkey="k") for n in range(3)])
    await client.post("/topics/orders/events", content=body, headers=BATCH)
    broker = from_url(url)
    await broker.connect()
    source = await broker.subscribe(["orders"], "billing", SubscribeOptions(prefetch=1))
    (delivery,) = await source.fetch(1, 5.0)
    await delivery.ack()
    await source.close()
    await broker.close()
    topics = (await client.get("/topics")).json()["topics"]
    (orders,) = [t for t in topics if t["name"] == "orders"]
    assert orders["events"] == 3 and orders["partitions"] >= 1
    groups = (await client.get("/groups")).json()["groups"]
    (billing,) = [g for g in groups if g["name"] == "billing"]
    assert billing["lag"] == 2
    assert {"topic", "partition", "committed", "head", "lag", "owner"} <= set(
        billing["partitions"][0]
    )


def frames(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ":" in line[1:])
        if "data" in fields:
            out.append((fields["id"], json.loads(fields["data"])))
    return out


async def test_stream_delivers_a_new_event(client: httpx.AsyncClient) -> None:
    await client.post(
        "/topics/orders/events", content=json.dumps(cloudevent(0)), headers=STRUCTURED
    )
    stream = asyncio.create_task(
        client.get("/topics/orders/stream?limit=1&filter=type=OrderPlaced")
    )
    number = 1
    while not stream.done():  # until the stream has started and seen one
        await client.post(
            "/topics/orders/events",
            content=json.dumps(cloudevent(number, type="Other" if number == 1 else "OrderPlaced")),
            headers=STRUCTURED,
        )
        number += 1
        await asyncio.sleep(0.05)
    response = await stream
    assert response.headers["content-type"].startswith("text/event-stream")
    ((position, event),) = frames(response.text)
    assert event["type"] == "OrderPlaced" and event["id"] not in ("e-0", "e-1")
    partition, offset = position.split(":")
    assert partition.isdigit() and offset.isdigit()


async def test_stream_resumes_after_last_event_id(client: httpx.AsyncClient, url: str) -> None:
    for n in range(6):  # one by one: each its own publish time
        body = json.dumps(cloudevent(n, partitionkey=f"k{n % 2}"))
        await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
    seen, _ = events_of(await stored(url, "orders"))["e-2"]
    response = await client.get(
        "/topics/orders/stream?limit=3",
        headers={"last-event-id": f"{seen.partition}:{seen.offset}"},
    )
    assert sorted(event["id"] for _, event in frames(response.text)) == ["e-3", "e-4", "e-5"]


async def test_stream_refuses_a_bad_filter_and_last_event_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/topics/orders/stream?filter=type")
    assert response.status_code == 400 and "ATTR=VALUE" in response.json()["error"]
    response = await client.get("/topics/orders/stream", headers={"last-event-id": "x"})
    assert response.status_code == 400 and "<partition>:<offset>" in response.json()["error"]


async def test_head_and_since_find_offsets_with_few_reads(url: str) -> None:
    broker = from_url(url)
    assert isinstance(broker, Inspectable)
    await broker.connect()
    try:
        assert await head(broker, "t", 0) == 0
        for _ in range(13):
            await broker.publish("t", [Message(b"{}", key="same")])
        (record,) = [r for r in await broker.read("t") if r.offset == 9]
        partition = record.partition
        assert await head(broker, "t", partition) == 13
        assert await since(broker, "t", partition, record.published_at) <= 9
        assert await since(broker, "t", partition, float("inf")) == 13
        assert await since(broker, "t", partition, 0.0) == 0
    finally:
        await broker.close()


async def test_openapi_document_lists_the_routes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/topics/{topic}/events",
        "/topics",
        "/groups",
        "/topics/{topic}/stream",
        "/topics/{topic}/ws",
        "/dlq",
        "/dlq/{topic}",
        "/dlq/{topic}/{offset}",
        "/dlq/{topic}/redrive",
        "/dlq/{topic}/purge",
        "/events/{id}",
        "/trace/{id}",
        "/webhooks",
        "/webhooks/{id}",
        "/webhooks/{id}/resume",
        "/openapi.json",
    }
    responses = document["paths"]["/topics/{topic}/events"]["post"]["responses"]
    assert {"202", "400", "401", "413", "415"} <= set(responses)
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


def test_tidings_serve_runs_until_sigint(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = _env(TIDINGS_TOKEN=TOKEN)
    process = _start("serve", "--broker", url, "--port", str(port), cwd=tmp_path, env=env)
    try:
        assert wait_for_port("127.0.0.1", port, 20)
        response = httpx.post(
            f"http://127.0.0.1:{port}/topics/orders/events",
            content=json.dumps(cloudevent(1)),
            headers=STRUCTURED | AUTH,
        )
        assert response.status_code == 202
        assert response.json()["ids"] == ["e-1"]
    finally:
        code, stderr = _stop(process, signal.SIGINT)
    assert code == 0, stderr
    assert "e-1" in events_of(asyncio.run(stored(url, "orders")))
    assert not (tmp_path / "served.db.token").exists()  # TIDINGS_TOKEN given: none stored


async def test_a_broker_without_inspection_lists_nothing_and_streams_live(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Gateway, "inspectable", property(lambda self: None))
    for path in ("/topics", "/groups", "/dlq", "/dlq/orders", "/events/e-1", "/trace/e-1"):
        response = await client.get(path)
        assert response.status_code == 501
        assert "sqlite://" in response.json()["error"]
    stream = asyncio.create_task(client.get("/topics/live/stream?limit=1"))
    number = 0
    while not stream.done():  # until the live subscription is open and got one
        body = json.dumps(cloudevent(number))
        await client.post("/topics/live/events", content=body, headers=STRUCTURED)
        number += 1
        await asyncio.sleep(0.05)
    ((_, event),) = frames((await stream).text)
    assert event["type"] == "OrderPlaced"
