"""``/topics/{topic}/ws`` on a real ``tidings serve``, with the ``websockets`` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.typing import Origin

from gateway_process import Served, free_port, serving
from test_gateway import AUTH, STRUCTURED, TOKEN, cloudevent
from tidings.gateway import Settings, create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("socket")
    with serving(f"sqlite:///{folder / 'socket.db'}", folder, TIDINGS_TOKEN=TOKEN) as server:
        yield server


def _socket(served: Served, query: str) -> str:
    return f"ws://127.0.0.1:{served.port}/topics/orders/ws?{query}"


async def _receive(served: Served, query: str, count: int, **options: Any) -> list[Any]:
    """Connect, then publish until ``count`` frames came; the server then closes with 1000."""
    frames: list[Any] = []
    async with connect(_socket(served, query), **options) as socket:

        async def publish() -> None:
            async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
                number = 0
                while True:  # until the socket has seen enough (the source opens after accept)
                    kind = "Other" if number % 2 else "OrderPlaced"
                    body = json.dumps(cloudevent(number, type=kind, id=f"ws-{number}"))
                    await client.post("/topics/orders/events", content=body, headers=STRUCTURED)
                    number += 1
                    await asyncio.sleep(0.05)

        publisher = asyncio.create_task(publish())
        try:
            with pytest.raises(ConnectionClosedOK) as closed:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(socket.recv(), 30)))
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert len(frames) == count
    return frames


async def test_new_events_come_as_structured_cloudevents_filtered(served: Served) -> None:
    frames = await _receive(served, "filter=type=OrderPlaced&limit=3", 3, additional_headers=AUTH)
    assert all(frame["type"] == "OrderPlaced" for frame in frames)
    assert all(frame["specversion"] == "1.0" and frame["source"] == "/tests" for frame in frames)
    assert len({frame["id"] for frame in frames}) == 3


@pytest.mark.parametrize(
    "options",
    [
        {"query": f"limit=1&token={TOKEN}"},
        {"query": "limit=1", "additional_headers": {"cookie": f"tidings_token={TOKEN}"}},
        {"query": "limit=1", "additional_headers": AUTH, "origin": "origin-of-this-host"},
    ],
    ids=["query", "cookie", "same-origin"],
)
async def test_the_token_comes_by_query_cookie_or_header(
    served: Served, options: dict[str, Any]
) -> None:
    query = options.pop("query")
    if options.get("origin") == "origin-of-this-host":
        options["origin"] = Origin(f"http://127.0.0.1:{served.port}")
    (frame,) = await _receive(served, query, 1, **options)
    assert frame["specversion"] == "1.0"


async def _refusal(served: Served, query: str, **options: Any) -> tuple[int, str]:
    async with connect(_socket(served, query), **options) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 30)
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


async def test_a_cross_origin_page_or_a_missing_token_is_closed_with_1008(served: Served) -> None:
    evil = Origin("http://evil.example")
    code, reason = await _refusal(served, "", additional_headers=AUTH, origin=evil)
    assert code == 1008 and "'http://evil.example' is not this gateway's" in reason
    other_port = Origin(f"http://127.0.0.1:{served.port + 1}")
    assert (await _refusal(served, "", additional_headers=AUTH, origin=other_port))[0] == 1008
    assert (await _refusal(served, "", additional_headers=AUTH, origin=Origin("null")))[0] == 1008
    assert await _refusal(served, "") == (1008, "missing or invalid token")
    assert await _refusal(served, "token=wrong") == (1008, "missing or invalid token")


async def test_bad_parameters_close_with_4400_and_the_reason(served: Served) -> None:
    code, reason = await _refusal(served, "filter=type", additional_headers=AUTH)
    assert code == 4400 and "is not ATTR=VALUE" in reason
    with pytest.raises(ConnectionClosedError):  # 4400 is not a normal closure
        async with connect(_socket(served, "limit=0"), additional_headers=AUTH) as socket:
            await socket.recv()


def test_the_server_process_is_still_serving(served: Served) -> None:
    assert httpx.get(f"{served.url}/topics", headers=AUTH).status_code == 200


async def test_a_broker_failure_closes_with_1011(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'fails.db'}", Settings(token=TOKEN))
    port = free_port()
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)
        uri = f"ws://127.0.0.1:{port}/topics/orders/ws"
        async with connect(uri, additional_headers=AUTH) as socket:
            await asyncio.sleep(0.3)  # the socket's source is reading the topic
            await app.state.gateway.broker.close()  # the broker goes away under it
            with pytest.raises(ConnectionClosedError) as closed:
                await asyncio.wait_for(socket.recv(), 30)
    finally:
        server.should_exit = True
        await running
    received = closed.value.rcvd
    assert received is not None and received.code == 1011
    assert received.reason.startswith("the broker failed:")
