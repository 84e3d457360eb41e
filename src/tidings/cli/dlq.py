"""``tidings dlq list|show|redrive|purge``: the dead letters of a topic (``<topic>.dlq``).

TOPIC is the origin topic (``orders``) or its dead-letter topic (``orders.dlq``).
Redrive and purge work on the dead letters stored when they start; letters
that arrive meanwhile (a redriven event failing again) are left for next time.
The work itself is :mod:`tidings.dead_letters` (the gateway's ``/dlq`` does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from tidings import dead_letters
from tidings.cli._broker import inspecting
from tidings.cli._errors import EXIT_USAGE, CommandError, stderr
from tidings.cli._options import BrokerOption
from tidings.cli._output import compact, echo, format_time, json_line, note, stdout, warn
from tidings.dead_letters import (
    CHUNK,
    Letter,
    dead_letter_queues,
    find_letter,
    find_queue,
    letters,
    queue_name,
    stored_letters,
)
from tidings.deadletter import DLQ_SUFFIX
from tidings.errors import ConfigurationError, NotFoundError

__all__ = ["dlq"]

dlq = typer.Typer(
    name="dlq",
    help="Dead letters: list, show, redrive to their topic, purge.",
    no_args_is_help=True,
)

TopicArgument = Annotated[
    str,
    typer.Argument(
        metavar="TOPIC",
        help="The origin topic (orders) or its dead-letter topic (orders.dlq).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


# -- reading dead letters ------------------------------------------------------------


def _summary(letter: Letter) -> str:
    where = f"{letter.stored.partition}/{letter.stored.offset}"
    record = letter.record
    if record is None:
        return f"{where}  not a dead-letter record ({letter.problem})"
    what = f"{letter.event.type}  {letter.event.id}" if letter.event else "poison  -"
    error = record.error_type.rsplit(".", 1)[-1]
    message = compact(" ".join(record.error_message.split()), 100).strip('"')
    return (
        f"{where}  {what}  {error}: {message}  attempts {record.attempts}  "
        f"last failure {format_time(record.last_failure)}  group {record.origin_group}"
    )


@contextlib.asynccontextmanager
async def _reported() -> AsyncIterator[None]:
    """The core's errors as the command's: a mistake in the arguments, or nothing there."""
    try:
        yield
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except NotFoundError as exc:
        raise CommandError(str(exc)) from None


# -- list ----------------------------------------------------------------------------


def list_dead_letters(
    topic: Annotated[
        str | None,
        typer.Argument(
            metavar="[TOPIC]",
            help="Origin topic (orders) or dead-letter topic (orders.dlq). "
            "Without it: every dead-letter topic with its count.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    broker: BrokerOption = None,
) -> None:
    """List dead-letter topics, or the dead letters of TOPIC, oldest first."""
    if topic is None:
        asyncio.run(_list_topics(broker, as_json))
    else:
        asyncio.run(_list_letters(broker, topic, as_json))


async def _list_topics(url: str | None, as_json: bool) -> None:
    async with inspecting(url, read_only=True) as broker:
        found = await dead_letter_queues(broker)
    if as_json:
        for info in found:
            origin = info.name.removesuffix(DLQ_SUFFIX)
            echo(json_line({"topic": info.name, "origin": origin, "dead_letters": info.events}))
        return
    if not found:
        note("no dead-letter topics")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("dead-letter topic")
    table.add_column("origin")
    table.add_column("dead letters", justify="right")
    table.add_column("bytes", justify="right")
    for info in found:
        table.add_row(
            Text(info.name),
            Text(info.name.removesuffix(DLQ_SUFFIX)),
            Text(str(info.events)),
            Text(decimal(info.bytes)),
        )
    stdout().print(table)


async def _list_letters(url: str | None, topic: str, as_json: bool) -> None:
    async with inspecting(url, read_only=True) as broker, _reported():
        info = await find_queue(broker, topic)
        if info is None:
            note(f"no dead letters: {queue_name(topic)} does not exist")
            return
        count = 0
        async for letter in letters(broker, info):
            echo(json_line(letter.to_dict()) if as_json else _summary(letter))
            count += 1
        if not count and not as_json:
            note(f"no dead letters in {info.name}")


# -- show ----------------------------------------------------------------------------


def show(
    topic: TopicArgument,
    offset: Annotated[
        int,
        typer.Argument(
            metavar="OFFSET", min=0, help="Offset of the dead letter.", show_default=False
        ),
    ],
    partition: Annotated[
        int | None,
        typer.Option(
            "--partition", "-p", metavar="P", min=0, help="Partition (needed if ambiguous)."
        ),
    ] = None,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Show one dead letter: its failure record and the event, as pretty JSON."""
    letter = asyncio.run(_show(broker, topic, offset, partition))
    record = letter.to_dict()
    if as_json:
        echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    body = record.pop("event", None)
    failure = record.pop("dead_letter", {})
    place = ("topic", "partition", "offset", "stored_at", "key")
    fields = {name: record.pop(name) for name in place} | failure | record
    width = max(len(name) for name in fields) + 2
    echo("\n".join(f"{name + ':':<{width}}{_text(value)}" for name, value in fields.items()))
    if body is not None:
        echo("event:")
        echo(json.dumps(body, ensure_ascii=False, indent=2))


def _text(value: object) -> str:
    """A field's value on one line: strings as is unless they hold line breaks or controls."""
    if isinstance(value, str) and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=False)


async def _show(url: str | None, topic: str, offset: int, partition: int | None) -> Letter:
    async with inspecting(url, read_only=True) as broker, _reported():
        return await find_letter(broker, topic, offset, partition)


# -- redrive and purge -------------------------------------------------------------------


def redrive(
    topic: TopicArgument,
    limit: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Redrive at most N, oldest first."),
    ] = None,
    broker: BrokerOption = None,
) -> None:
    """Publish dead letters again to their origin topic and remove them from the DLQ.

    Each chunk moves atomically: a letter is never both redriven and kept, nor
    lost. Every group of the origin topic sees the redriven events again.
    """
    moved, skipped, name = asyncio.run(_redrive(broker, topic, limit))
    if skipped:
        warn(f"left {skipped} message(s) that carry no dead-letter record in {name}")
    echo(f"redrove {moved} dead letter(s) from {name}")


async def _redrive(url: str | None, topic: str, limit: int | None) -> tuple[int, int, str]:
    async with inspecting(url) as broker, _reported():
        info = await find_queue(broker, topic)
        if info is None:
            return 0, 0, queue_name(topic)
        total = min(info.events, limit) if limit is not None else info.events
        with _progress("redriving", total) as advance:
            done = await dead_letters.redrive(broker, info, limit, advance)
    return done.moved, done.skipped, info.name


def purge(
    topic: TopicArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Delete every dead letter of TOPIC (asks first unless --yes)."""
    if not yes and not sys.stdin.isatty():
        raise CommandError("purge deletes dead letters for good: pass --yes to confirm", EXIT_USAGE)
    deleted, name = asyncio.run(_purge(broker, topic, yes))
    echo(f"deleted {deleted} dead letter(s) from {name}")


async def _purge(url: str | None, topic: str, yes: bool) -> tuple[int, str]:
    async with inspecting(url) as broker, _reported():
        info = await find_queue(broker, topic)
        if info is None:
            return 0, queue_name(topic)
        entries = await stored_letters(broker, info)
        if not entries:
            return 0, info.name
        if not yes:
            typer.confirm(f"Delete {len(entries)} dead letter(s) from {info.name}?", abort=True)
        with _progress("purging", len(entries)) as advance:
            deleted = await dead_letters.purge(broker, info, entries, advance)
    return deleted, info.name


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for batches of more than one chunk (terminals only)."""
    console = stderr()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=total <= CHUNK or not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda count: progress.advance(task, count)


dlq.command("list")(list_dead_letters)
dlq.command()(show)
dlq.command()(redrive)
dlq.command()(purge)
