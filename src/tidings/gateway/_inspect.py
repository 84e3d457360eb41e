"""``GET /topics`` and ``GET /groups``: what an inspectable broker stores, as JSON.

On a broker that cannot be inspected every such route answers 501 (:func:`not_inspectable`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidings.gateway._responses import error
from tidings.gateway._state import gateway_of
from tidings.inspection import GroupInfo, TopicInfo

__all__ = ["list_groups", "list_topics", "not_inspectable"]


def not_inspectable(request: Request) -> Response:
    kind = type(gateway_of(request).broker).__name__
    return error(
        501,
        f"{kind} does not list topics, groups, stored events or dead letters; "
        "serve the embedded broker (sqlite://) to inspect it",
    )


async def list_topics(request: Request) -> Response:
    broker = gateway_of(request).inspectable
    if broker is None:
        return not_inspectable(request)
    return JSONResponse({"topics": [_topic(t) for t in await broker.list_topics()]})


async def list_groups(request: Request) -> Response:
    broker = gateway_of(request).inspectable
    if broker is None:
        return not_inspectable(request)
    return JSONResponse({"groups": [_group(g) for g in await broker.list_groups()]})


def _topic(info: TopicInfo) -> dict[str, Any]:
    return asdict(info)


def _group(info: GroupInfo) -> dict[str, Any]:
    partitions = [{**asdict(p), "lag": p.lag} for p in info.partitions]
    return {"name": info.name, "members": info.members, "lag": info.lag, "partitions": partitions}
