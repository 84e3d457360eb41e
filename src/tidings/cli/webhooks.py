"""``tidings webhooks``: register, list, remove and resume webhooks in the broker's store.

A ``tidings serve`` on the same broker delivers them (within its poll
interval, about a second); see ``docs/webhooks.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.table import Table

from tidings.broker import Broker
from tidings.brokers import from_url
from tidings.cli._broker import connected
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption, JsonLinesOption
from tidings.cli._output import cells, echo, json_line, note, stdout
from tidings.errors import ConfigurationError
from tidings.settings import default_broker_url
from tidings.webhooks import (
    GROUP_PREFIX,
    Webhook,
    WebhookStorage,
    WebhookStore,
    new_webhook,
    register,
)
from tidings.webhooks.dispatcher import forget_group

__all__ = ["webhooks"]

webhooks = typer.Typer(
    name="webhooks",
    help="Webhooks: events of a topic POSTed, signed, to HTTP endpoints by tidings serve.",
    no_args_is_help=True,
    add_completion=False,
)


@webhooks.command("add")
def add(
    url: Annotated[str, typer.Argument(metavar="URL", help="Endpoint to POST events to.")],
    topic: Annotated[str, typer.Option("--topic", "-t", metavar="TOPIC", help="Topic to send.")],
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="ATTR=VALUE",
            help="Send only events whose attribute ATTR is VALUE (repeat: all of them).",
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(metavar="whsec_...", help="Signing secret; default: a new one, printed."),
    ] = None,
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private-webhooks",
            help="Register a loopback, private or link-local target (the gateway must "
            "allow them too).",
        ),
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Register URL for the events of --topic; prints its id and its secret."""
    try:
        webhook = new_webhook(url, topic, filter=_filter(filters or []), secret=secret)
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    asyncio.run(_add(broker, webhook, allow_private))
    note(f"webhook {webhook.id}: {topic} -> {url}")
    echo(f"id: {webhook.id}")
    echo(f"secret: {webhook.secret}")


async def _add(broker: str | None, webhook: Webhook, allow_private: bool) -> None:
    async with _store(broker, create=True) as (_, store):
        try:
            await register(store, webhook, allow_private=allow_private)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None


@webhooks.command("list")
def list_(as_json: JsonLinesOption = False, broker: BrokerOption = None) -> None:
    """List the webhooks: target, topic, filter, and paused or failing ones."""
    found = asyncio.run(_list(broker))
    if as_json:
        for webhook in found:
            echo(json_line(webhook.to_dict()))
        return
    if not found:
        note("no webhooks yet (tidings webhooks add URL --topic TOPIC)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "state", "topic", "url", "filter", "failures", "last error"):
        table.add_column(column, justify="right" if column == "failures" else "left")
    for webhook in found:
        table.add_row(
            *cells(
                webhook.id,
                "paused" if webhook.paused else "active",
                webhook.topic,
                webhook.url,
                _filter_text(webhook),
                webhook.failures,
                webhook.last_error or "-",
            )
        )
    stdout().print(table)


async def _list(broker: str | None) -> list[Webhook]:
    async with _store(broker) as (_, store):
        return await store.webhooks()


@webhooks.command("remove")
def remove(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")], broker: BrokerOption = None
) -> None:
    """Remove a webhook; tidings serve stops delivering to it."""
    asyncio.run(_change(broker, webhook_id, "remove"))
    note(f"removed webhook {webhook_id}")


@webhooks.command("resume")
def resume(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")], broker: BrokerOption = None
) -> None:
    """Resume a paused webhook: what came meanwhile is delivered."""
    asyncio.run(_change(broker, webhook_id, "resume"))
    note(f"resumed webhook {webhook_id}")


async def _change(broker: str | None, webhook_id: str, action: str) -> None:
    async with _store(broker) as (client, store):
        if action == "remove":
            done = await store.remove_webhook(webhook_id)
            if done:  # a running tidings serve deletes it instead once it stops delivering
                await forget_group(client, GROUP_PREFIX + webhook_id)
        else:
            done = await store.set_paused(webhook_id, False)
    if not done:
        raise CommandError(f"no webhook {webhook_id!r} (tidings webhooks list shows them)")


@asynccontextmanager
async def _store(
    broker: str | None, *, create: bool = False
) -> AsyncIterator[tuple[Broker, WebhookStore]]:
    _refuse_without_storage(broker)
    async with connected(broker, create=create) as client:
        assert isinstance(client, WebhookStorage)
        yield client, client.webhook_store()


def _refuse_without_storage(url: str | None) -> None:
    """Say so before connecting to a broker that keeps no registrations (Kafka, NATS ...)."""
    try:
        candidate = from_url(url or default_broker_url())
    except ConfigurationError:
        return  # connected() reports it, as every command does
    if not isinstance(candidate, WebhookStorage):
        raise CommandError(
            f"{type(candidate).__name__} keeps no webhook registrations; use the embedded "
            "broker (sqlite://) for webhooks"
        )


def _filter(pairs: list[str]) -> dict[str, dict[str, str]] | None:
    """``--filter type=OrderPlaced --filter source=/shop`` as an ``exact`` filter."""
    if not pairs:
        return None
    exact = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise CommandError(f"--filter takes ATTR=VALUE, got {pair!r}", EXIT_USAGE)
        exact[name.strip()] = value
    return {"exact": exact}


def _filter_text(webhook: Webhook) -> str:
    if webhook.filter is None:
        return "-"
    exact = webhook.filter.get("exact")
    if isinstance(exact, dict) and len(webhook.filter) == 1:
        return " ".join(f"{name}={value}" for name, value in exact.items())
    return json_line(webhook.filter)
