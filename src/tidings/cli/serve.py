"""``tidings serve``: the HTTP gateway (see ``docs/gateway.md``) on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from tidings.brokers import from_url, redact_url
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, note, warn
from tidings.errors import ConfigurationError
from tidings.settings import default_broker_url

__all__ = ["serve"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def serve(
    broker: BrokerOption = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(metavar="PORT", min=0, max=65535, help="Port to listen on.")
    ] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            envvar="TIDINGS_TOKEN",
            show_envvar=True,
            help="Bearer token to ask for; default: the one stored beside the broker "
            "(made and printed on the first start).",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Ask for no token (local development only)."),
    ] = False,
    max_body_size: Annotated[
        int,
        typer.Option(metavar="BYTES", min=1, help="Largest request body; larger ones get 413."),
    ] = 1024 * 1024,
    allow_private_webhooks: Annotated[
        bool,
        typer.Option(
            "--allow-private-webhooks",
            help="Deliver webhooks to loopback, private and link-local addresses too "
            "(refused by default: SSRF guard).",
        ),
    ] = False,
    webhook_attempts: Annotated[
        int, typer.Option(metavar="N", min=1, help="Deliveries of an event before its DLQ.")
    ] = 5,
    webhook_retry_delay: Annotated[
        float,
        typer.Option(metavar="SECONDS", min=0, help="First webhook backoff (doubles, max 60 s)."),
    ] = 1.0,
    webhook_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.001, help="Time an endpoint has to answer.")
    ] = 10.0,
    webhook_pause_after: Annotated[
        int,
        typer.Option(metavar="N", min=1, help="Events failed in a row that pause an endpoint."),
    ] = 5,
) -> None:
    """Serve the HTTP gateway: POST CloudEvents to topics, list topics and groups, stream events.

    Routes: POST /topics/{topic}/events, GET /topics, GET /groups,
    GET /topics/{topic}/stream (Server-Sent Events), /topics/{topic}/ws
    (WebSocket), /dlq, /webhooks, GET /events/{id}, GET /trace/{id},
    GET /openapi.json. Every route but /openapi.json asks for the token.
    It delivers the webhooks registered on the broker (tidings webhooks).
    Ctrl-C stops it.
    """
    try:
        import uvicorn

        from tidings.gateway import Settings, create_app, stored_token
        from tidings.webhooks.dispatcher import WebhookSettings
    except ImportError as exc:
        raise CommandError(
            f"tidings serve needs the gateway extra ({exc.name} is missing): "
            "pip install 'tidings[gateway]'"
        ) from None
    url = broker or default_broker_url()
    try:
        from_url(url)  # a URL no broker takes is reported before a token is stored for it
    except ConfigurationError as exc:
        raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None
    if no_auth:
        warn("--no-auth: anyone who can reach the gateway can publish, read and purge")
        if host not in _LOOPBACK:
            warn(f"--no-auth on {host}: other machines can reach it")
    elif token is None:
        try:
            kept = stored_token(url)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        token = kept.value
        if kept.created:
            note(f"made a gateway token, stored in {kept.path} (shown only this once):")
            echo(token)
    try:
        webhooks = WebhookSettings(
            allow_private=allow_private_webhooks,
            attempts=webhook_attempts,
            initial_delay=webhook_retry_delay,
            timeout=webhook_timeout,
            pause_after=webhook_pause_after,
        )
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        settings = Settings(
            token=token, auth=not no_auth, max_body_size=max_body_size, webhooks=webhooks
        )
    except ConfigurationError as exc:
        raise CommandError(f"--token: {exc}", EXIT_USAGE) from None
    if allow_private_webhooks:
        warn("--allow-private-webhooks: webhooks may reach loopback and private addresses")
    app = create_app(url, settings)
    note(f"serving {redact_url(url)} on http://{host}:{port} (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
