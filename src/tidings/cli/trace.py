"""``tidings trace ID``: the tree of events a flow is made of, and what each group did.

Reads every retained topic through :class:`~tidings.inspection.Inspectable`
(never joining a group): the events, the dead letters of the ``.dlq``
topics, and the handling records Apps store on ``tidings.handlings``
(:func:`tidings.causal.read_flow`, which the gateway's ``/trace`` uses too).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from tidings.causal import Flow, GroupOutcome, Node, flow_document, read_flow
from tidings.cli._broker import inspecting
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, format_time, json_line, stdout

__all__ = ["trace"]


def trace(
    wanted: Annotated[
        str,
        typer.Argument(metavar="ID", help="An event id or a correlation id.", show_default=False),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tree as one JSON document.")
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Print the events of a flow as a tree: what caused what, and how each group handled it.

    ID is a correlation id (every event of the flow) or an event id (that
    event and what it caused). Each event shows its type, source, topic and
    time; each consumer group its outcome (handled, retried n times,
    dead-lettered, compensated), how long the event waited and how long the
    handling took. Timings and retries come from the records Apps keep on
    tidings.handlings (by default on the embedded broker).
    """
    if not wanted:
        raise CommandError("ID must not be empty", EXIT_USAGE)
    flow = asyncio.run(_read(broker, wanted))
    if flow is None:
        raise CommandError(f"no event with id or correlation id {wanted!r}")
    if as_json:
        echo(json_line(flow_document(wanted, flow)))
    else:
        console = stdout()
        for root in flow.roots:
            console.print(_tree(root))


async def _read(url: str | None, wanted: str) -> Flow | None:
    async with inspecting(url, unsupported=EXIT_USAGE, read_only=True) as broker:
        return await read_flow(broker, wanted)


# -- text ------------------------------------------------------------------------------


def _tree(root: Node) -> Tree:
    tree = Tree(_label(root), guide_style="dim")
    _grow(tree, root)
    return tree


def _grow(tree: Tree, node: Node) -> None:
    for child in node.children:
        _grow(tree.add(_label(child)), child)


def _label(node: Node) -> Text:
    event, where = node.event, node.stored
    text = Text.assemble(
        (event.type, "bold"),
        f"  {event.source}  {where.topic} {where.partition}/{where.offset}  ",
        format_time(event.time or where.published_at),
        ("  id ", "dim"),
        event.id,
    )
    if node.compensates is not None:
        text.append(f"  compensates {node.compensates}", "magenta")
    for compensation in node.compensated_by:
        text.append(
            f"  compensated by {compensation.event.type} {compensation.event.id}", "magenta"
        )
    for outcome in node.groups:
        text.append(f"\n  {outcome.group}: ")
        text.append(_describe(outcome), _STYLE[outcome.outcome])
    if not node.groups:
        text.append("\n  no handling recorded", "dim")
    return text


_STYLE = {
    "handled": "green",
    "compensated": "magenta",
    "dead_lettered": "red",
    "retrying": "yellow",
    "committed": "dim",
    "pending": "yellow",
}


def _describe(outcome: GroupOutcome) -> str:
    retried = f"retried {_times(outcome.retries)}, then " if outcome.retries else ""
    if outcome.outcome == "dead_lettered":
        return (
            f"{retried}dead-lettered to {outcome.dead_letter_topic} after "
            f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}: "
            f"{_first_line(outcome.error)}"
        )
    if outcome.outcome == "retrying":
        return f"retried {_times(outcome.retries)}, not handled yet"
    if outcome.outcome == "committed":
        return "committed without a handling record (filtered out, or not recorded)"
    if outcome.outcome == "pending":
        return "not handled yet"
    done = "compensated" if outcome.outcome == "compensated" else "handled"
    timing = f"; waited {_seconds(outcome.waited)}, took {_seconds(outcome.took)}"
    return f"{retried}{done}{timing}"


def _first_line(error: str | None, width: int = 120) -> str:
    """The error's first line (a repr shows line breaks as ``\\n``), cut to ``width``."""
    text = error or "?"
    line = text.split("\\n", 1)[0].split("\n", 1)[0][: width - 1]
    return line if line == text else line + "…"


def _times(count: int) -> str:
    return f"{count} time{'s' if count != 1 else ''}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"
