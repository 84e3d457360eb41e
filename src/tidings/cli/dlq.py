"""``tidings dlq list|show|redrive|purge``: the dead letters of a topic (``<topic>.dlq``).

TOPIC is the origin topic (``orders``) or its dead-letter topic (``orders.dlq``).
Redrive and purge work on the dead letters stored when they start; letters
that arrive meanwhile (a redriven event failing again) are left for next time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from tidings.broker import Message
from tidings.cli._broker import InspectableBroker, heads, inspecting, stored
from tidings.cli._errors import EXIT_USAGE, CommandError, stderr
from tidings.cli._options import BrokerOption
from tidings.cli._output import (
    compact,
    echo,
    event_object,
    format_time,
    json_line,
    note,
    stdout,
    warn,
)
from tidings.deadletter import DLQ_SUFFIX, DeadLetter, dead_letter_topic
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.inspection import StoredMessage, TopicInfo

__all__ = ["CHUNK", "dlq"]

#: Dead letters moved or deleted per broker call (one transaction each).
CHUNK = 500

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


@dataclass(frozen=True)
class _Letter:
    """A message of a dead-letter topic, read as far as it goes."""

    stored: StoredMessage
    record: DeadLetter | None
    """None: the message carries no dead-letter record."""
    event: Event | None
    problem: str | None
    """Why ``record`` or ``event`` is missing."""

    @classmethod
    def read(cls, message: StoredMessage) -> _Letter:
        try:
            record = DeadLetter.from_message(message.message)
        except DecodeError as exc:
            return cls(message, None, None, str(exc))
        try:
            return cls(message, record, record.event(), None)
        except DecodeError as exc:
            return cls(message, record, None, str(exc))

    def summary(self) -> str:
        where = f"{self.stored.partition}/{self.stored.offset}"
        record = self.record
        if record is None:
            return f"{where}  not a dead-letter record ({self.problem})"
        what = f"{self.event.type}  {self.event.id}" if self.event else "poison  -"
        error = record.error_type.rsplit(".", 1)[-1]
        message = compact(" ".join(record.error_message.split()), 100).strip('"')
        return (
            f"{where}  {what}  {error}: {message}  attempts {record.attempts}  "
            f"last failure {format_time(record.last_failure)}  group {record.origin_group}"
        )

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        out: dict[str, Any] = {
            "topic": self.stored.topic,
            "partition": self.stored.partition,
            "offset": self.stored.offset,
            "stored_at": format_time(self.stored.published_at),
            "key": self.stored.message.key,
        }
        if record is None:
            out["problem"] = self.problem
            out["headers"] = dict(self.stored.message.headers)
            out.update(_value(self.stored.message.value))
            return out
        out["dead_letter"] = {
            "error_type": record.error_type,
            "error_message": record.error_message,
            "attempts": record.attempts,
            "first_failure": format_time(record.first_failure),
            "last_failure": format_time(record.last_failure),
            "origin_topic": record.origin_topic,
            "origin_partition": record.origin_partition,
            "origin_offset": record.origin_offset,
            "origin_group": record.origin_group,
            "subscription": record.subscription,
        }
        if self.event is not None:
            out["event"] = event_object(self.event)
        else:
            out["poison"] = self.problem
            out["headers"] = dict(record.original_message().headers)
            out.update(_value(record.value))
        return out


def _value(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _dlq_name(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else dead_letter_topic(topic)


async def _find(broker: InspectableBroker, topic: str) -> TopicInfo | None:
    """The dead-letter topic of ``topic``; None if that topic exists but has none yet."""
    if not topic:
        raise CommandError("TOPIC must not be empty", EXIT_USAGE)
    name = _dlq_name(topic)
    found = {t.name: t for t in await broker.list_topics()}
    if name in found:
        return found[name]
    origin = name.removesuffix(DLQ_SUFFIX)
    if origin in found:
        return None
    raise CommandError(f"no topic {origin!r} and no dead-letter topic {name!r}")


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
        found = [t for t in await broker.list_topics() if t.name.endswith(DLQ_SUFFIX)]
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
    async with inspecting(url, read_only=True) as broker:
        info = await _find(broker, topic)
        if info is None:
            note(f"no dead letters: {_dlq_name(topic)} does not exist")
            return
        count = 0
        async for message in stored(broker, info.name, info.partitions):
            letter = _Letter.read(message)
            echo(json_line(letter.to_dict()) if as_json else letter.summary())
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


async def _show(url: str | None, topic: str, offset: int, partition: int | None) -> _Letter:
    async with inspecting(url, read_only=True) as broker:
        info = await _find(broker, topic)
        name = _dlq_name(topic)
        if info is None:
            raise CommandError(f"no dead letter at offset {offset}: {name} does not exist")
        if partition is not None and partition >= info.partitions:
            raise CommandError(
                f"--partition {partition}: {name} has partitions 0-{info.partitions - 1}",
                EXIT_USAGE,
            )
        candidates = [partition] if partition is not None else range(info.partitions)
        found = []
        for p in candidates:
            found += [
                m for m in await broker.read(name, after={p: offset}, limit=1) if m.offset == offset
            ]
    if not found:
        where = f"partition {partition}, " if partition is not None else ""
        raise CommandError(f"no dead letter at {where}offset {offset} in {name}")
    if len(found) > 1:
        listed = ", ".join(str(m.partition) for m in found)
        raise CommandError(
            f"offset {offset} exists in partitions {listed} of {name}; pass --partition",
            EXIT_USAGE,
        )
    return _Letter.read(found[0])


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
    name = _dlq_name(topic)
    moved = skipped = taken = 0
    async with inspecting(url) as broker:
        info = await _find(broker, topic)
        if info is None:
            return 0, 0, name
        until = await heads(broker, name, info.partitions)
        total = min(info.events, limit) if limit is not None else info.events
        entries: list[tuple[int, int, str, Message]] = []
        with _progress("redriving", total) as advance:
            messages = stored(broker, name, info.partitions, until=until)
            async with contextlib.aclosing(messages):
                async for message in messages:
                    try:
                        record = DeadLetter.from_message(message.message)
                    except DecodeError:
                        skipped += 1
                        continue
                    origin = record.origin_topic
                    entries.append(
                        (message.partition, message.offset, origin, record.original_message())
                    )
                    taken += 1
                    if taken == limit:
                        break
                    if len(entries) == CHUNK:
                        moved += await _move(broker, name, entries, advance)
            moved += await _move(broker, name, entries, advance)
    return moved, skipped, name


async def _move(
    broker: InspectableBroker,
    name: str,
    entries: list[tuple[int, int, str, Message]],
    advance: Callable[[int], None],
) -> int:
    if not entries:
        return 0
    count = await broker.move(name, entries)
    advance(len(entries))
    entries.clear()
    return count


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
    name = _dlq_name(topic)
    async with inspecting(url) as broker:
        info = await _find(broker, topic)
        if info is None:
            return 0, name
        until = await heads(broker, name, info.partitions)
        entries = [
            (m.partition, m.offset)
            async for m in stored(broker, name, info.partitions, until=until)
        ]
        if not entries:
            return 0, name
        if not yes:
            typer.confirm(f"Delete {len(entries)} dead letter(s) from {name}?", abort=True)
        deleted = 0
        with _progress("purging", len(entries)) as advance:
            for chunk in _chunks(entries):
                deleted += await broker.delete(name, chunk)
                advance(len(chunk))
    return deleted, name


def _chunks(entries: list[tuple[int, int]]) -> Iterator[Sequence[tuple[int, int]]]:
    for start in range(0, len(entries), CHUNK):
        yield entries[start : start + CHUNK]


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
