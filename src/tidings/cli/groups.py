"""``tidings groups``: consumer groups, how far they are, and deleting one."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from tidings.cli._broker import inspecting
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption, JsonLinesOption
from tidings.cli._output import cells, echo, json_line, note, stdout
from tidings.errors import GroupInUseError
from tidings.inspection import GroupAdmin, GroupInfo

__all__ = ["groups", "unknown_group"]

groups = typer.Typer(
    name="groups",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)


@groups.callback()
def show(ctx: typer.Context, as_json: JsonLinesOption = False, broker: BrokerOption = None) -> None:
    """List consumer groups: live members, and per partition committed, head, lag and owner.

    `tidings groups delete GROUP` deletes one.
    """
    if ctx.invoked_subcommand is not None:
        return
    found = asyncio.run(_list_groups(broker))
    if as_json:
        for info in found:
            echo(json_line(_group_object(info)))
        return
    if not found:
        note("no consumer groups yet")
        return
    console = stdout()
    for index, info in enumerate(found):
        if index:
            console.print()
        console.print(
            f"group {info.name}: {len(info.members)} live member(s), total lag {info.lag}",
            markup=False,
        )
        if info.members:
            console.print(f"members: {', '.join(info.members)}", markup=False)
        table = Table(box=None, pad_edge=False)
        for column in ("topic", "partition", "committed", "head", "lag", "owner"):
            table.add_column(column, justify="left" if column in ("topic", "owner") else "right")
        for part in info.partitions:
            table.add_row(
                *cells(
                    part.topic,
                    part.partition,
                    part.committed,
                    part.head,
                    part.lag,
                    part.owner or "-",
                )
            )
        console.print(table)


def _group_object(info: GroupInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "members": info.members,
        "lag": info.lag,
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "head": p.head,
                "lag": p.lag,
                "owner": p.owner,
            }
            for p in info.partitions
        ],
    }


async def _list_groups(url: str | None) -> list[GroupInfo]:
    async with inspecting(url, read_only=True) as broker:
        return await broker.list_groups()


def unknown_group(name: str, known: list[GroupInfo], hint: str = "") -> CommandError:
    """``no consumer group named 'x' (known: a, b)``, plus ``; <hint>`` if given."""
    names = ", ".join(info.name for info in known) or "none"
    return CommandError(
        f"no consumer group named {name!r} (known: {names})" + (f"; {hint}" if hint else "")
    )


@groups.command()
def delete(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(metavar="GROUP", help="Consumer group to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Delete GROUP's stored state, so a new group of that name starts afresh.

    Positions, assignments, scheduled retries and exactly-once records go.
    Refused while the group has live members: stop them first. Asks first
    unless --yes.
    """
    if not yes and not sys.stdin.isatty():
        raise CommandError(
            "deleting a consumer group loses its positions for good: pass --yes to confirm",
            EXIT_USAGE,
        )
    url = broker if broker is not None else _parent_broker(ctx)
    info = asyncio.run(_delete(url, group, yes))
    echo(f"deleted consumer group {group!r} ({len(info.partitions)} partition position(s))")


def _parent_broker(ctx: typer.Context) -> str | None:
    """``tidings groups --broker URL delete GROUP`` names the broker before the command."""
    parent = ctx.parent
    value = parent.params.get("broker") if parent is not None else None
    return value if isinstance(value, str) else None


async def _delete(url: str | None, group: str, yes: bool) -> GroupInfo:
    async with inspecting(url) as broker:
        if not isinstance(broker, GroupAdmin):
            raise CommandError(f"{type(broker).__name__} cannot delete consumer groups", EXIT_USAGE)
        known = await broker.list_groups()
        info = next((g for g in known if g.name == group), None)
        if info is None:
            raise unknown_group(group, known)
        if info.members:
            raise CommandError(
                f"consumer group {group!r} has {len(info.members)} live member(s) "
                f"({', '.join(info.members)}); stop them first"
            )
        if not yes:
            typer.confirm(
                f"Delete consumer group {group!r} (total lag {info.lag})? "
                "A new group of that name starts afresh",
                abort=True,
            )
        try:
            deleted = await broker.delete_group(group)
        except GroupInUseError as exc:
            raise CommandError(str(exc)) from None
        if not deleted:
            raise unknown_group(group, await broker.list_groups())
        return info
