"""``tidings request TOPIC``: publish a request, wait for its reply, print the reply."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from tidings.app import App
from tidings.cli._broker import connected
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, event_object, json_line
from tidings.errors import InvalidEventError, RequestError
from tidings.event import Event

__all__ = ["request"]


def request(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="Topic of the request.", show_default=False)
    ],
    type: Annotated[
        str,
        typer.Option("--type", "-t", metavar="TYPE", help="CloudEvents type, e.g. PriceCart."),
    ],
    data: Annotated[
        str, typer.Option("--data", "-d", metavar="JSON", help="The request's data as JSON.")
    ],
    key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Partition key of the request.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="How long to wait for the reply.")
    ] = 5.0,
    source: Annotated[str, typer.Option(metavar="SRC", help="CloudEvents source.")] = (
        "/tidings-cli"
    ),
    broker: BrokerOption = None,
) -> None:
    """Publish a request and print its reply as CloudEvents JSON.

    Exits with 1 when no reply comes within --timeout, or when the handler
    failed for good (the error it raised is shown).
    """
    if not topic:
        raise CommandError("TOPIC must not be empty", EXIT_USAGE)
    if timeout <= 0:
        raise CommandError("--timeout must be > 0", EXIT_USAGE)
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise CommandError(f"--data is not valid JSON: {exc}", EXIT_USAGE) from None
    try:
        event = Event(type=type, source=source or "/tidings-cli", data=value, partitionkey=key)
    except InvalidEventError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    reply = asyncio.run(_ask(broker, topic, event, timeout))
    echo(json_line(event_object(reply)))


async def _ask(url: str | None, topic: str, event: Event, timeout: float) -> Event:
    async with connected(url, create=True) as broker:
        app = App("tidings-cli", broker=broker, source=event.source)
        try:
            reply: Event = await app.request(event, topic=topic, timeout=timeout)
        except RequestError as exc:
            raise CommandError(str(exc)) from None
        finally:
            await app.stop()
    return reply
