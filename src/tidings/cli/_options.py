"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["BROKER_ENVVAR", "BrokerOption", "JsonLinesOption", "given_on_command_line"]

BROKER_ENVVAR = "TIDINGS_BROKER"

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        metavar="URL",
        envvar=BROKER_ENVVAR,
        show_envvar=True,
        help="Broker URL, e.g. memory:// or sqlite:///./tidings.db.",
    ),
]

#: ``--json`` of a listing: one JSON object per line.
JsonLinesOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def given_on_command_line(ctx: typer.Context, name: str) -> bool:
    """True if option ``name`` was typed on the command line (not an env var or default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
