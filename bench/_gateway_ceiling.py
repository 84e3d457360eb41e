"""The ceiling for bench_gateway.py: a Starlette app that reads the body and answers 202.

It touches no broker, checks no token and decodes nothing: what uvicorn and
Starlette cost by themselves on this machine. Run by the benchmark as
``python -m uvicorn _gateway_ceiling:app`` with the same uvicorn settings as
``tidings serve``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    await request.body()
    return Response(b'{"accepted":true}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/topics/{topic}/events", accept, methods=["POST"])])
