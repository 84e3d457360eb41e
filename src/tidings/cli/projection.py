"""``tidings projection``: the checkpoints of an app's projections, and rebuilding one.

``MODULE:PROJECTOR`` names a :class:`~tidings.projections.Projector` (its
store, its read model's database and its projections), as ``tidings run``
names an App.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import JsonLinesOption
from tidings.cli._output import cells, echo, json_line, stdout
from tidings.cli._target import load_object
from tidings.errors import ConfigurationError
from tidings.projections import Projector

__all__ = ["projection"]

projection = typer.Typer(
    help="Projections: read models fed from the event store.", no_args_is_help=True
)

TargetArgument = Annotated[
    str, typer.Argument(metavar="MODULE:PROJECTOR", help="The Projector to use.")
]


def _projector(target: str) -> Projector:
    found = load_object(target, "PROJECTOR")
    if not isinstance(found, Projector):
        raise CommandError(
            f"{target} is a {type(found).__name__}, not a tidings.projections.Projector",
            EXIT_USAGE,
        )
    return found


@projection.command()
def status(target: TargetArgument, json: JsonLinesOption = False) -> None:
    """Each projection's checkpoint, the store's last position, and the lag."""
    projector = _projector(target)

    async def read() -> list[tuple[str, int, int, int]]:
        async with projector:
            return [(s.name, s.position, s.head, s.lag) for s in await projector.status()]

    rows = asyncio.run(read())
    if json:
        for name, position, head, lag in rows:
            echo(json_line({"name": name, "position": position, "head": head, "lag": lag}))
        return
    table = Table("projection", "checkpoint", "store head", "lag")
    for row in rows:
        table.add_row(*cells(*row))
    stdout().print(table)


@projection.command()
def rebuild(
    target: TargetArgument,
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
) -> None:
    """Empty NAME's read model and replay every stored event into it, with a progress bar."""
    projector = _projector(target)

    async def replay() -> int:
        async with projector:
            head = await projector.store.last_position()
            columns = (TextColumn(name), BarColumn(), MofNCompleteColumn())
            with Progress(*columns, console=stdout(), transient=True) as bar:
                task = bar.add_task(name, total=head)
                return await projector.rebuild(
                    name, lambda done, left: bar.update(task, completed=done, total=done + left)
                )

    try:
        count = asyncio.run(replay())
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    echo(f"{name}: {count} event(s) replayed")
