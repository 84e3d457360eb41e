"""``/dlq``: dead letters as JSON, the ``tidings dlq`` commands over HTTP.

``GET /dlq`` lists the dead-letter topics; ``GET /dlq/{topic}`` the letters
of one (``topic`` is the origin, ``orders``, or ``orders.dlq``);
``GET /dlq/{topic}/{offset}`` shows one (``?partition=`` where several
partitions have that offset); ``POST /dlq/{topic}/redrive`` publishes them
again to their origin (``?limit=N``: the oldest N) and ``POST
/dlq/{topic}/purge`` deletes them. The work is :mod:`tidings.dead_letters`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidings import dead_letters
from tidings.dead_letters import (
    dead_letter_queues,
    find_letter,
    find_queue,
    letters,
    queue_name,
    stored_letters,
)
from tidings.deadletter import DLQ_SUFFIX
from tidings.errors import ConfigurationError, NotFoundError, TidingsError
from tidings.gateway._inspect import not_inspectable
from tidings.gateway._responses import error
from tidings.gateway._state import gateway_of
from tidings.gateway._stream import BadRequest, parse_limit
from tidings.inspection import Inspectable

__all__ = ["list_letters", "list_queues", "purge", "redrive", "show_letter"]

Handler = Callable[[Request, Inspectable], Awaitable[Response]]


def _route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` on the gateway's broker, with the core's errors as HTTP statuses."""

    async def endpoint(request: Request) -> Response:
        broker = gateway_of(request).inspectable
        if broker is None:
            return not_inspectable(request)
        try:
            return await handler(request, broker)
        except (ConfigurationError, BadRequest) as exc:
            return error(400, str(exc))
        except NotFoundError as exc:
            return error(404, str(exc))
        except TidingsError as exc:
            return error(503, f"the broker failed: {exc}")

    return endpoint


async def _queues(request: Request, broker: Inspectable) -> Response:
    found = [
        {
            "topic": info.name,
            "origin": info.name.removesuffix(DLQ_SUFFIX),
            "dead_letters": info.events,
            "bytes": info.bytes,
        }
        for info in await dead_letter_queues(broker)
    ]
    return JSONResponse({"queues": found})


async def _letters(request: Request, broker: Inspectable) -> Response:
    topic = request.path_params["topic"]
    limit = parse_limit(request.query_params.get("limit")) or 1000
    queue = await find_queue(broker, topic)
    found: list[dict[str, Any]] = []
    if queue is not None:
        async for letter in letters(broker, queue):
            if len(found) == limit:
                break
            found.append(letter.to_dict())
    return JSONResponse({"topic": queue_name(topic), "dead_letters": found})


async def _show(request: Request, broker: Inspectable) -> Response:
    partition = request.query_params.get("partition")
    if partition is not None and not partition.isdigit():
        raise BadRequest(f"partition must be a number, got {partition!r}")
    letter = await find_letter(
        broker,
        request.path_params["topic"],
        request.path_params["offset"],
        None if partition is None else int(partition),
    )
    return JSONResponse(letter.to_dict())


async def _redrive(request: Request, broker: Inspectable) -> Response:
    topic = request.path_params["topic"]
    limit = parse_limit(request.query_params.get("limit"))
    queue = await find_queue(broker, topic)
    if queue is None:
        return JSONResponse({"topic": queue_name(topic), "redriven": 0, "skipped": 0})
    done = await dead_letters.redrive(broker, queue, limit)
    return JSONResponse({"topic": queue.name, "redriven": done.moved, "skipped": done.skipped})


async def _purge(request: Request, broker: Inspectable) -> Response:
    topic = request.path_params["topic"]
    queue = await find_queue(broker, topic)
    if queue is None:
        return JSONResponse({"topic": queue_name(topic), "deleted": 0})
    entries = await stored_letters(broker, queue)
    deleted = await dead_letters.purge(broker, queue, entries)
    return JSONResponse({"topic": queue.name, "deleted": deleted})


list_queues = _route(_queues)
list_letters = _route(_letters)
show_letter = _route(_show)
redrive = _route(_redrive)
purge = _route(_purge)
