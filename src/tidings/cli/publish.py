"""``tidings publish TOPIC``: publish one event, or one per JSON line of stdin."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from tidings.app import App
from tidings.broker import Broker
from tidings.cli._broker import connected
from tidings.cli._errors import EXIT_USAGE, CommandError, stderr
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, event_object, json_line
from tidings.errors import InvalidEventError, TidingsError
from tidings.event import Event

__all__ = ["BATCH_SIZE", "publish"]

#: Lines of stdin published with one broker call (and validated before it).
BATCH_SIZE = 500
#: How long a partial batch waits for more input before it is published anyway.
_LINGER = 0.05
_DEFAULT_SOURCE = "/tidings-cli"


def publish(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="Topic to publish to.", show_default=False)
    ],
    type: Annotated[
        str,
        typer.Option("--type", "-t", metavar="TYPE", help="CloudEvents type, e.g. OrderPlaced."),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            metavar="JSON",
            help="The event's data as JSON, or '-' to read one JSON value per line of stdin.",
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Partition key (events of one key keep their order)."),
    ] = None,
    source: Annotated[str, typer.Option(metavar="SRC", help="CloudEvents source.")] = (
        _DEFAULT_SOURCE
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each published event as CloudEvents JSON.")
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Publish an event with JSON data; with --data - publish one per line of stdin.

    Prints the event id (with --json, the event). Lines of stdin are published
    in batches of up to 500, sooner when the input pauses; blank lines are
    skipped. Every line of a batch is checked before the batch is published, so
    a bad line stops the command with nothing from its batch on published.
    """
    if not topic:
        raise CommandError("TOPIC must not be empty", EXIT_USAGE)
    if not source:
        raise CommandError("--source must not be empty", EXIT_USAGE)
    template = _Template(type, key, source)
    try:
        template.event(None)  # a bad --type or --source fails before stdin is read
    except InvalidEventError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if data == "-":
        asyncio.run(_publish_lines(broker, topic, template, _stdin_fd(), as_json))
        return
    try:
        value = _parse(data)
    except ValueError as exc:
        raise CommandError(f"--data is not valid JSON: {exc}", EXIT_USAGE) from None
    event = template.event(value)
    asyncio.run(_publish_one(broker, topic, event))
    echo(json_line(event_object(event)) if as_json else event.id)


@dataclass(frozen=True)
class _Template:
    """The attributes every event of one command shares."""

    type: str
    key: str | None
    source: str

    def event(self, data: Any) -> Event:
        """Raises InvalidEventError for a bad --type or --source."""
        return Event(type=self.type, source=self.source, data=data, partitionkey=self.key)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _app(broker: Broker, source: str) -> App:
    # The App brings the codec, the size limit and the publish path every event takes.
    return App("tidings-cli", broker=broker, source=source)


async def _publish_one(url: str | None, topic: str, event: Event) -> None:
    async with connected(url, create=True) as broker:
        app = _app(broker, event.source)
        try:
            await app.publish(event, topic=topic)
        finally:
            await app.stop()


_EOF = object()


class _BadLine(Exception):
    def __init__(self, number: int, first_of_batch: int, reason: str) -> None:
        super().__init__(reason)
        self.number = number
        self.first_of_batch = first_of_batch
        self.reason = reason


async def _publish_lines(
    url: str | None, topic: str, template: _Template, fd: int, as_json: bool
) -> None:
    lines: asyncio.Queue[object] = asyncio.Queue()
    _start_reader(fd, lines)
    published = 0
    async with connected(url, create=True) as broker:
        app = _app(broker, template.source)
        try:
            async for first_line, batch in _batches(lines, app, template):
                try:
                    events = await app.publish_batch(batch, topic=topic)
                except TidingsError as exc:
                    raise CommandError(
                        f"publishing stdin lines {first_line} on failed: {exc}; "
                        f"{_done(published, first_line)}"
                    ) from None
                published += len(events)
                if as_json:
                    for event in events:
                        echo(json_line(event_object(event)))
        except _BadLine as bad:
            raise CommandError(
                f"stdin line {bad.number} {bad.reason}; {_done(published, bad.first_of_batch)}"
            ) from None
        finally:
            await app.stop()
    message = f"published {published} event(s) to {topic!r}"
    if as_json:
        stderr().print(message)
    else:
        echo(message)


def _done(published: int, first_line: int) -> str:
    if published == 0:
        return "nothing was published"
    return (
        f"{published} event(s) from the lines before line {first_line} were published, "
        "nothing from there on"
    )


async def _batches(
    lines: asyncio.Queue[object], app: App, template: _Template
) -> AsyncIterator[tuple[int, list[Event]]]:
    """Events of stdin's lines in batches: full ones, or what came before input paused."""
    batch: list[Event] = []
    first = 0
    while True:
        if not batch:
            chunk = await lines.get()
        else:
            try:
                chunk = await asyncio.wait_for(lines.get(), _LINGER)
            except TimeoutError:
                yield first, batch
                batch = []
                continue
        if chunk is _EOF:
            break
        if isinstance(chunk, OSError):
            raise CommandError(f"cannot read stdin: {chunk}")
        assert isinstance(chunk, list)
        for number, raw in chunk:
            if not raw.strip():
                continue
            if not batch:
                first = number
            batch.append(_line_event(number, first, raw, app, template))
            if len(batch) >= BATCH_SIZE:
                yield first, batch
                batch = []
    if batch:
        yield first, batch


def _line_event(number: int, first: int, raw: bytes, app: App, template: _Template) -> Event:
    try:
        value = _parse(raw)
    except json.JSONDecodeError as exc:
        raise _BadLine(
            number, first, f"is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except ValueError as exc:  # not UTF-8, or NaN/Infinity
        raise _BadLine(number, first, f"is not valid JSON: {exc}") from None
    try:
        event = template.event(value)
        size = len(app.codec.encode(event)[0])
    except InvalidEventError as exc:
        raise _BadLine(number, first, f"makes an invalid event: {exc}") from None
    if size > app.max_event_size:
        raise _BadLine(
            number, first, f"makes an event of {size} bytes, over the limit of {app.max_event_size}"
        )
    return event


def _stdin_fd() -> int:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        raise CommandError("--data - reads stdin, but there is none", EXIT_USAGE) from None


def _start_reader(fd: int, lines: asyncio.Queue[object]) -> None:
    """Read file descriptor ``fd`` in a daemon thread, handing lists of numbered lines to ``lines``.

    A daemon thread, since a blocked read of a terminal or pipe cannot be
    interrupted and must not keep the process alive once the command ends;
    it reads the descriptor itself, so it holds no lock of ``sys.stdin`` that
    the interpreter would wait for when it exits.
    """
    loop = asyncio.get_running_loop()

    def put(item: object) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop is closed: the command has ended
            return False
        return True

    def read() -> None:
        number = 0
        pending = b""
        try:
            while chunk := os.read(fd, 1 << 16):
                *complete, pending = (pending + chunk).split(b"\n")
                numbered = list(enumerate(complete, start=number + 1))
                number += len(complete)
                if numbered and not put(numbered):
                    return
        except OSError as exc:
            put(exc)
            return
        if pending:
            put([(number + 1, pending)])
        put(_EOF)

    threading.Thread(target=read, name="tidings-cli-stdin", daemon=True).start()
