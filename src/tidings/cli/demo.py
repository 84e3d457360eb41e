"""``tidings demo``: run the built-in example and show what happened."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tidings.brokers import from_url
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.errors import ConfigurationError

__all__ = ["demo"]


def demo(
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            metavar="URL",
            help="Broker URL to run on. Default: a fresh in-memory broker (TIDINGS_BROKER "
            "is ignored, so the demo never touches your data).",
        ),
    ] = None,
) -> None:
    """Publish a few orders and watch chaining, a retry and dead letters happen."""
    from tidings.examples import quickstart  # pydantic and the example load only here

    if broker is not None:
        try:
            from_url(broker)  # only builds the client (no connection), to vet the URL
        except ConfigurationError as exc:
            raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None
    quickstart.quiet_logs()
    if not asyncio.run(quickstart.run(broker)):
        raise typer.Exit(1)
