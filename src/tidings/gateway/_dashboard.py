"""The dashboard at ``/``: one page, its script and style, and a stream of snapshots.

The page is static (``static/dashboard.*``, served from the package; nothing
from a CDN) and puts event content into the document only as text. It stays
live through ``GET /dashboard/stream``, Server-Sent Events carrying one
``snapshot`` every ``Settings.dashboard_interval`` seconds (topics, groups
with their lag per partition, dead-letter queues, webhooks and their health),
and through the event
streams of ``/topics/{topic}/stream`` for its live tail. A Content Security
Policy lets the page load and connect to this gateway only.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tidings.dead_letters import dead_letter_queues
from tidings.deadletter import DLQ_SUFFIX
from tidings.gateway._state import Gateway, gateway_of
from tidings.webhooks.registry import WebhookStorage

__all__ = ["dashboard_script", "dashboard_stream", "dashboard_style", "home"]

_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_STATIC = resources.files("tidings.gateway") / "static"


@functools.cache
def _read(name: str) -> bytes:
    return (_STATIC / name).read_bytes()


def _asset(name: str, media_type: str) -> Response:
    headers = {"cache-control": "no-cache"}
    if media_type == "text/html":
        headers["content-security-policy"] = _POLICY
    return Response(_read(name), media_type=media_type, headers=headers)


async def home(request: Request) -> Response:
    return _asset("dashboard.html", "text/html")


async def dashboard_script(request: Request) -> Response:
    return _asset("dashboard.js", "text/javascript")


async def dashboard_style(request: Request) -> Response:
    return _asset("dashboard.css", "text/css")


async def snapshot(gateway: Gateway) -> dict[str, Any]:
    """What the dashboard shows, read from the broker now."""
    out: dict[str, Any] = {"broker": gateway.app.broker_url or type(gateway.broker).__name__}
    if isinstance(gateway.broker, WebhookStorage):
        hooks = await gateway.broker.webhook_store().webhooks()
        out["webhooks"] = [w.to_dict() for w in hooks]
    broker = gateway.inspectable
    if broker is None:
        out["inspectable"] = False
        return out
    topics = [t for t in await broker.list_topics() if not t.name.startswith("tidings.")]
    out["topics"] = [
        {"name": t.name, "events": t.events, "partitions": t.partitions}
        for t in sorted(topics, key=lambda t: t.name)
        if not t.name.endswith(DLQ_SUFFIX)
    ]
    out["groups"] = [
        {
            "name": g.name,
            "members": list(g.members),
            "lag": g.lag,
            "partitions": [{**asdict(p), "lag": p.lag} for p in g.partitions],
        }
        for g in sorted(await broker.list_groups(), key=lambda g: g.name)
    ]
    out["dlq"] = [
        {"topic": q.name, "origin": q.name.removesuffix(DLQ_SUFFIX), "dead_letters": q.events}
        for q in await dead_letter_queues(broker)
    ]
    return out


async def dashboard_stream(request: Request) -> Response:
    gateway = gateway_of(request)

    async def frames() -> AsyncIterator[str]:
        while True:
            try:
                body = json.dumps(await snapshot(gateway), separators=(",", ":"))
                yield f"event: snapshot\ndata: {body}\n\n"
            except Exception as exc:  # the broker failed: say so, and try again
                yield f"event: problem\ndata: {json.dumps(str(exc))}\n\n"
            await asyncio.sleep(gateway.settings.dashboard_interval)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
