"""The gateway's ASGI app: :func:`create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from tidings.app import App
from tidings.brokers import from_url
from tidings.gateway._inspect import list_groups, list_topics
from tidings.gateway._openapi import openapi
from tidings.gateway._publish import publish_events
from tidings.gateway._state import Gateway, Settings
from tidings.gateway._stream import stream_events
from tidings.settings import default_broker_url

__all__ = ["Settings", "create_app"]

_SOURCE = "/tidings-gateway"


def create_app(broker_url: str | None = None, settings: Settings | None = None) -> Starlette:
    """The gateway for the broker at ``broker_url`` (default: ``TIDINGS_BROKER``).

    The broker is connected when the ASGI app starts (its lifespan) and
    closed when it stops. Raises ConfigurationError for a URL no broker takes.
    """
    broker = from_url(broker_url or default_broker_url())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broker.connect()
        publisher = App("tidings-gateway", broker=broker, source=_SOURCE)
        app.state.gateway = Gateway(broker, publisher, settings or Settings())
        try:
            yield
        finally:
            await publisher.stop()
            await broker.close()

    routes = [
        Route("/topics/{topic}/events", publish_events, methods=["POST"]),
        Route("/topics/{topic}/stream", stream_events, methods=["GET"]),
        Route("/topics", list_topics, methods=["GET"]),
        Route("/groups", list_groups, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
