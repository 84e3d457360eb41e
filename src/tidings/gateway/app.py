"""The gateway's ASGI app: :func:`create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from tidings.app import App
from tidings.brokers import from_url
from tidings.gateway import _dlq, _webhooks
from tidings.gateway._dashboard import dashboard_script, dashboard_stream, dashboard_style, home
from tidings.gateway._events import show_event, show_trace
from tidings.gateway._guard import Guard
from tidings.gateway._inspect import list_groups, list_topics
from tidings.gateway._openapi import openapi
from tidings.gateway._publish import publish_events
from tidings.gateway._socket import stream_socket
from tidings.gateway._state import Gateway, Settings
from tidings.gateway._stream import stream_events
from tidings.gateway._token import stored_token
from tidings.settings import default_broker_url
from tidings.webhooks import WebhookStorage
from tidings.webhooks.dispatcher import Dispatcher

__all__ = ["Settings", "create_app"]

_SOURCE = "/tidings-gateway"


def create_app(broker_url: str | None = None, settings: Settings | None = None) -> Starlette:
    """The gateway for the broker at ``broker_url`` (default: ``TIDINGS_BROKER``).

    Every route but ``/openapi.json`` asks for ``settings.token``; without
    one, for the token stored beside the broker, made now if there is none
    (see :func:`tidings.gateway.stored_token`). ``Settings(auth=False)``
    asks for none. The broker is connected when the ASGI app starts (its
    lifespan) and closed when it stops; while it runs, the webhooks
    registered in the broker's store are delivered (``settings.webhooks``).
    Raises ConfigurationError for a URL no broker takes, or a token that
    cannot be stored.
    """
    url = broker_url or default_broker_url()
    broker = from_url(url)
    settings = settings or Settings()
    token = None
    if settings.auth:
        token = settings.token or stored_token(url).value

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broker.connect()
        publisher = App("tidings-gateway", broker=broker, source=_SOURCE)
        dispatcher = None
        if isinstance(broker, WebhookStorage):
            dispatcher = Dispatcher(broker, broker.webhook_store(), settings.webhooks)
            await dispatcher.start()
        app.state.gateway = Gateway(broker, publisher, settings, webhooks=dispatcher)
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            await publisher.stop()
            await broker.close()

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/dashboard/app.js", dashboard_script, methods=["GET"]),
        Route("/dashboard/app.css", dashboard_style, methods=["GET"]),
        Route("/dashboard/stream", dashboard_stream, methods=["GET"]),
        Route("/topics/{topic}/events", publish_events, methods=["POST"]),
        Route("/topics/{topic}/stream", stream_events, methods=["GET"]),
        WebSocketRoute("/topics/{topic}/ws", stream_socket),
        Route("/topics", list_topics, methods=["GET"]),
        Route("/groups", list_groups, methods=["GET"]),
        Route("/dlq", _dlq.list_queues, methods=["GET"]),
        Route("/dlq/{topic}", _dlq.list_letters, methods=["GET"]),
        Route("/dlq/{topic}/redrive", _dlq.redrive, methods=["POST"]),
        Route("/dlq/{topic}/purge", _dlq.purge, methods=["POST"]),
        Route("/dlq/{topic}/{offset:int}", _dlq.show_letter, methods=["GET"]),
        Route("/webhooks", _webhooks.list_webhooks, methods=["GET"]),
        Route("/webhooks", _webhooks.add_webhook, methods=["POST"]),
        Route("/webhooks/{id}", _webhooks.remove_webhook, methods=["DELETE"]),
        Route("/webhooks/{id}/resume", _webhooks.resume_webhook, methods=["POST"]),
        Route("/events/{id:path}", show_event, methods=["GET"]),
        Route("/trace/{id:path}", show_trace, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    middleware = [Middleware(Guard, token=token)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
