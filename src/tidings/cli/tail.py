"""``tidings tail TOPIC``: print a topic's stored events, and with --follow the new ones.

Reading goes through :class:`~tidings.inspection.Inspectable`, so tailing
never joins or moves a consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeAlias

import typer

from tidings.broker import Message, SubscribeOptions
from tidings.brokers import redact_url
from tidings.cli._broker import InspectableBroker, can_inspect, connected, heads, inspecting, stored
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import compact, echo, event_object, format_time, json_line, note, warn
from tidings.codec import Codec
from tidings.errors import ConfigurationError, DecodeError
from tidings.event import Event
from tidings.filters import Filter, all_of, exact
from tidings.inspection import StoredMessage, TopicInfo
from tidings.settings import default_broker_url

__all__ = ["tail"]

DEFAULT_LAST = 10
#: Seconds between two looks for new events while following.
POLL_INTERVAL = 0.2
_PAGE = 1000

#: A stored message with its event, or with why it is not a valid CloudEvent.
_Item: TypeAlias = tuple[StoredMessage, Event | str]
_Take: TypeAlias = Callable[[_Item], None]


def tail(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="Topic to read.", show_default=False)
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Print every stored event, oldest first.")
    ] = False,
    last: Annotated[
        int | None,
        typer.Option(
            "--last",
            "-n",
            metavar="N",
            min=0,
            show_default=False,
            help=f"Print the newest N stored events first (default {DEFAULT_LAST}).",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C."),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Stop after printing N events in total."),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="ATTR=VALUE",
            help="Only events whose CloudEvents attribute equals VALUE, e.g. type=OrderPlaced "
            "(repeatable: all must match).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One CloudEvents JSON object per line.")
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Print the events stored in TOPIC (the newest 10, or all) and, with --follow, new ones.

    Each line shows time, partition/offset, type, subject or key, id and data.
    A stored message that is not a valid CloudEvent prints as poison (with
    --json it is skipped with a warning on stderr). With --filter, the whole
    topic is read to find the newest matches.
    """
    if from_beginning and last is not None:
        raise CommandError("use --from-beginning or --last, not both", EXIT_USAGE)
    printer = _Printer(as_json, _filter(filters or []), limit)
    start = _Start(from_beginning, DEFAULT_LAST if last is None else last)
    try:
        asyncio.run(_tail(broker, topic, start, follow, printer))
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _filter(specs: list[str]) -> Filter | None:
    parts = []
    for spec in specs:
        name, equals, value = spec.partition("=")
        if not equals or not name:
            raise CommandError(
                f"--filter {spec!r} is not ATTR=VALUE, e.g. type=OrderPlaced", EXIT_USAGE
            )
        try:
            parts.append(exact(**{name: value}))
        except ConfigurationError as exc:
            raise CommandError(f"--filter {spec!r}: {exc}", EXIT_USAGE) from None
    return all_of(*parts) if parts else None


@dataclass(frozen=True)
class _Start:
    from_beginning: bool
    last: int


class _Printer:
    """Decodes, filters and prints stored messages; counts them against ``limit``."""

    def __init__(self, as_json: bool, match: Filter | None, limit: int | None) -> None:
        self.as_json = as_json
        self.match = match
        self.limit = limit
        self.printed = 0
        self._codec = Codec()

    @property
    def done(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def select(self, record: StoredMessage) -> _Item | None:
        """The message with its event (or why it is poison); None if filtered out."""
        message = record.message
        try:
            event = self._codec.decode(message.value, message.headers)
        except DecodeError as exc:
            return None if self.match is not None else (record, str(exc))
        if self.match is not None and not self.match.matches(event):
            return None
        return record, event

    def show(self, item: _Item) -> None:
        if self.done:
            return
        record, event = item
        where = f"{record.partition}/{record.offset}"
        if isinstance(event, str):
            if self.as_json:
                warn(f"skipped {record.topic} {where}: not a CloudEvent ({event})")
                return
            line = (
                f"{format_time(record.published_at)}  {where}  poison: not a CloudEvent ({event})"
            )
        elif self.as_json:
            line = json_line(event_object(event))
        else:
            line = "  ".join(
                (
                    format_time(event.time or record.published_at),
                    where,
                    event.type,
                    event.subject or event.partitionkey or record.message.key or "-",
                    event.id,
                    compact(event.data),
                )
            )
        echo(line)
        self.printed += 1


async def _tail(
    url: str | None, topic: str, start: _Start, follow: bool, printer: _Printer
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not can_inspect(url):
            await _tail_live(url, topic, start, follow, printer, stop)
            return
        async with inspecting(url, read_only=True) as broker:
            info = await _find(broker, topic)
            if info is None and not follow:
                known = ", ".join(t.name for t in await broker.list_topics()) or "none"
                raise CommandError(f"no topic {topic!r} (topics: {known})")
            positions: dict[int, int] = {}
            if info is not None:
                positions = await _show_stored(broker, info, start, printer, stop)
            if follow and not printer.done and not stop.is_set():
                waiting = "" if info is not None else " (it does not exist yet)"
                note(f"following {topic!r}{waiting}; press Ctrl-C to stop")
                await _follow(broker, topic, positions, printer, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _tail_live(
    url: str | None,
    topic: str,
    start: _Start,
    follow: bool,
    printer: _Printer,
    stop: asyncio.Event,
) -> None:
    """A broker that keeps no readable history (MQTT): new events only, with --follow."""
    if not follow or start.from_beginning:
        raise CommandError(
            f"{redact_url(url or default_broker_url())} keeps no history to read; "
            "tidings tail --follow shows the events published from now on",
            EXIT_USAGE,
        )
    async with connected(url) as broker:
        source = await broker.subscribe([topic], None, SubscribeOptions(start="latest"))
        note(f"following {topic!r} (this broker keeps no history: new events only); Ctrl-C stops")
        try:
            while not stop.is_set() and not printer.done:
                for d in await source.fetch(_PAGE, POLL_INTERVAL):
                    message = Message(d.value, d.headers, d.key)
                    item = printer.select(
                        StoredMessage(d.topic, d.partition, d.offset, d.published_at, message)
                    )
                    if item is not None:
                        printer.show(item)
                    await d.ack()
        finally:
            await source.close()


async def _find(broker: InspectableBroker, topic: str) -> TopicInfo | None:
    return next((t for t in await broker.list_topics() if t.name == topic), None)


async def _show_stored(
    broker: InspectableBroker,
    info: TopicInfo,
    start: _Start,
    printer: _Printer,
    stop: asyncio.Event,
) -> dict[int, int]:
    """Print what is stored; return per partition the offset following ends at."""
    if start.from_beginning:
        return await _scan(broker, info, printer.show, printer, stop)
    newest: deque[_Item] = deque(maxlen=start.last)
    if printer.match is not None:
        # The newest matches may be anywhere: keep the last N while reading it all.
        positions = await _scan(broker, info, newest.append, printer, stop)
    else:
        # Heads first: an event published meanwhile is left to following, not shown twice.
        positions = await heads(broker, info.name, info.partitions)
        if start.last:
            for message in await broker.read(info.name, last=start.last, limit=start.last):
                if message.offset < positions.get(message.partition, 0):
                    item = printer.select(message)
                    if item is not None:
                        newest.append(item)
    for item in newest:
        printer.show(item)
    return positions


async def _scan(
    broker: InspectableBroker,
    info: TopicInfo,
    take: _Take,
    printer: _Printer,
    stop: asyncio.Event,
) -> dict[int, int]:
    """Read every stored event in publish order, handing matches to ``take``."""
    positions = dict.fromkeys(range(info.partitions), 0)
    async with contextlib.aclosing(stored(broker, info.name, info.partitions)) as messages:
        async for message in messages:
            positions[message.partition] = message.offset + 1
            item = printer.select(message)
            if item is not None:
                take(item)
            if stop.is_set() or printer.done:
                break
    return positions


async def _follow(
    broker: InspectableBroker,
    topic: str,
    positions: dict[int, int],
    printer: _Printer,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set() and not printer.done:
        if not positions:  # the topic did not exist: look again
            info = await _find(broker, topic)
            if info is not None:
                positions.update(dict.fromkeys(range(info.partitions), 0))
        page = await broker.read(topic, after=positions, limit=_PAGE) if positions else []
        for message in page:
            positions[message.partition] = message.offset + 1
            item = printer.select(message)
            if item is not None:
                printer.show(item)
        if len(page) < _PAGE:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
