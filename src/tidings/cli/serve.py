"""``tidings serve``: the HTTP gateway (see ``docs/gateway.md``) on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from tidings.brokers import redact_url
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import note
from tidings.errors import ConfigurationError
from tidings.settings import default_broker_url

__all__ = ["serve"]


def serve(
    broker: BrokerOption = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(metavar="PORT", min=0, max=65535, help="Port to listen on.")
    ] = 8765,
) -> None:
    """Serve the HTTP gateway: POST CloudEvents to topics, list topics and groups, stream events.

    Routes: POST /topics/{topic}/events, GET /topics, GET /groups,
    GET /topics/{topic}/stream (Server-Sent Events), GET /openapi.json.
    Ctrl-C stops it.
    """
    try:
        import uvicorn

        from tidings.gateway import create_app
    except ImportError as exc:
        raise CommandError(
            f"tidings serve needs the gateway extra ({exc.name} is missing): "
            "pip install 'tidings[gateway]'"
        ) from None
    url = broker or default_broker_url()
    try:
        app = create_app(url)
    except ConfigurationError as exc:
        raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None
    note(f"serving {redact_url(url)} on http://{host}:{port} (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
