"""The ``tidings`` command line (typer + rich); the only part of tidings that imports them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

import tidings
from tidings.cli._errors import EXIT_FAILURE, EXIT_USAGE, CommandError, report
from tidings.cli.asyncapi import asyncapi
from tidings.cli.demo import demo
from tidings.cli.dlq import dlq
from tidings.cli.groups import groups
from tidings.cli.projection import projection
from tidings.cli.publish import publish
from tidings.cli.replay import replay
from tidings.cli.request import request
from tidings.cli.run import run
from tidings.cli.schema import schema
from tidings.cli.serve import serve
from tidings.cli.tail import tail
from tidings.cli.topics import topics
from tidings.cli.trace import trace
from tidings.cli.webhooks import webhooks
from tidings.errors import TidingsError

__all__ = ["cli", "main"]

cli = typer.Typer(
    name="tidings",
    help="Event-driven systems for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold broker passwords
)
cli.command()(run)
cli.command()(demo)
cli.command()(publish)
cli.command()(request)
cli.command()(tail)
cli.command()(topics)
cli.add_typer(groups, name="groups")
cli.command()(replay)
cli.command()(trace)
cli.add_typer(dlq, name="dlq")
cli.command()(serve)
cli.add_typer(schema, name="schema")
cli.add_typer(projection, name="projection")
cli.command()(asyncapi)
cli.add_typer(webhooks, name="webhooks")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tidings {tidings.__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Event-driven systems for Python."""


def _with_help_hint(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    if exc.exit_code != EXIT_USAGE or ctx is None:
        return exc.format_message()
    return f"{exc.format_message()} (see '{ctx.command_path} --help')"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tidings`` script: run the command, exit with its code.

    A user's mistake ends with one ``error: ...`` line on stderr and exit code 2
    (bad command line) or 1 (anything else), never a traceback.
    """
    command = typer.main.get_command(cli)
    try:
        code = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="tidings",
            standalone_mode=False,
        )
    except CommandError as exc:
        report(exc.message)
        code = exc.exit_code
    except typer.TyperException as exc:  # typer's usage and parameter errors
        code = exc.exit_code
        # With no arguments the help has been shown already (as typer does).
        if type(exc).__name__ != "NoArgsIsHelpError":
            report(_with_help_hint(exc))
    except typer.Abort:
        report("aborted")
        code = EXIT_FAILURE
    except TidingsError as exc:
        report(str(exc))
        code = EXIT_FAILURE
    sys.exit(code if isinstance(code, int) else 0)
