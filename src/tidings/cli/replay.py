"""``tidings replay``: move a consumer group on a topic, so it handles events again (or skips)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from tidings.broker import Position, Seekable
from tidings.cli._broker import InspectableBroker, inspecting
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, format_time
from tidings.cli.groups import unknown_group
from tidings.inspection import PartitionLag

__all__ = ["parse_since", "replay"]

_DURATION = re.compile(r"(?:[0-9]+[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def replay(
    group: Annotated[
        str,
        typer.Option("--group", "-g", metavar="GROUP", help="Consumer group to move."),
    ],
    topic: Annotated[
        str, typer.Option("--topic", "-t", metavar="TOPIC", help="Topic to move it on.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Handle every stored event again.")
    ] = False,
    offset: Annotated[
        int | None,
        typer.Option(metavar="N", min=0, help="Continue at offset N of every partition."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Continue at the first event stored at or after TIME: RFC 3339 "
            "(2024-05-01T12:00:00Z; no offset means UTC) or an age like 10m, 2h, 1d.",
        ),
    ] = None,
    to_end: Annotated[
        bool, typer.Option("--to-end", help="Skip every stored event (continue with new ones).")
    ] = False,
    create: Annotated[
        bool,
        typer.Option("--create", help="Start GROUP at the position if it does not exist yet."),
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Move GROUP on TOPIC: to the beginning, an offset, a time, or the end.

    Give exactly one of --from-beginning, --offset, --since, --to-end. Running
    members of the group pick up the new position at their next heartbeat;
    events after it are delivered again (handlers must be idempotent). An
    unknown GROUP is refused unless --create is given.
    """
    chosen = [
        name
        for name, given in (
            ("--from-beginning", from_beginning),
            ("--offset", offset is not None),
            ("--since", since is not None),
            ("--to-end", to_end),
        )
        if given
    ]
    if len(chosen) != 1:
        what = "none" if not chosen else " and ".join(chosen)
        raise CommandError(
            f"give exactly one of --from-beginning, --offset, --since, --to-end (got {what})",
            EXIT_USAGE,
        )
    if not group or not topic:
        raise CommandError("--group and --topic must not be empty", EXIT_USAGE)
    position: Position
    if from_beginning:
        position, described = "beginning", "the beginning"
    elif to_end:
        position, described = "end", "the end"
    elif offset is not None:
        position, described = offset, f"offset {offset} of every partition"
    else:
        assert since is not None
        position = parse_since(since, datetime.now(UTC))
        described = f"the first event stored at or after {format_time(position)}"
    before, after, members = asyncio.run(_seek(broker, group, topic, position, create))
    echo(f"group {group!r} on topic {topic!r} moved to {described}")
    for part in after:
        old = before.get(part.partition)
        was = "-" if old is None else str(old.committed)
        echo(f"  partition {part.partition}: {was} -> {part.committed} (head {part.head})")
    lag = sum(p.lag for p in after)
    running = f"; its {members} live member(s) continue from there" if members else ""
    echo(f"lag now {lag} event(s){running}")


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 / ISO 8601 time (UTC unless it says otherwise), or ``now`` minus an age."""
    value = text.strip()
    if _DURATION.fullmatch(value):
        seconds = sum(
            int(amount) * _UNITS[unit] for amount, unit in re.findall(r"([0-9]+)([smhdw])", value)
        )
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--since {text!r} is not a time: use RFC 3339 like 2024-05-01T12:00:00Z, "
            "or an age like 30s, 10m, 2h, 1d, 1w",
            EXIT_USAGE,
        ) from None
    if when.utcoffset() is None:
        when = when.replace(tzinfo=UTC)
    if when > now:
        raise CommandError(f"--since {text!r} is in the future", EXIT_USAGE)
    return when


async def _seek(
    url: str | None, group: str, topic: str, position: Position, create: bool
) -> tuple[dict[int, PartitionLag], list[PartitionLag], int]:
    async with inspecting(url) as broker:
        if not isinstance(broker, Seekable):
            raise CommandError(f"{type(broker).__name__} cannot move consumer groups")
        known = [t.name for t in await broker.list_topics()]
        if topic not in known:
            # Seeking would create the topic: a typo must not.
            raise CommandError(f"no topic {topic!r} (topics: {', '.join(known) or 'none'})")
        groups = await broker.list_groups()
        if not create and group not in {info.name for info in groups}:
            # Seeking would create the group: a typo must not.
            raise unknown_group(group, groups, "pass --create to start one at the replay position")
        before = {p.partition: p for p in (await _group(broker, group, topic))[0]}
        await broker.seek(topic, group, position)
        after, members = await _group(broker, group, topic)
        return before, after, members


async def _group(
    broker: InspectableBroker, group: str, topic: str
) -> tuple[list[PartitionLag], int]:
    """The group's positions on ``topic``, and how many live members it has."""
    for info in await broker.list_groups():
        if info.name == group:
            return [p for p in info.partitions if p.topic == topic], len(info.members)
    return [], 0
