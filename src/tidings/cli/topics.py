"""``tidings topics`` and ``tidings groups``: what a broker stores, and how far groups are."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from tidings.cli._broker import inspecting
from tidings.cli._options import BrokerOption
from tidings.cli._output import echo, format_duration, json_line, note, stdout
from tidings.inspection import GroupInfo, TopicInfo

__all__ = ["groups", "topics"]

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def topics(as_json: JsonOption = False, broker: BrokerOption = None) -> None:
    """List topics: partitions, events, bytes, retention and the rate over the last minute."""
    found = asyncio.run(_list_topics(broker))
    if as_json:
        for info in found:
            echo(json_line(_topic_object(info)))
        return
    if not found:
        note("no topics yet")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("topic", "partitions", "events", "bytes", "retention", "rate"):
        table.add_column(column, justify="left" if column in ("topic", "retention") else "right")
    for info in found:
        table.add_row(
            *_cells(
                info.name,
                info.partitions,
                info.events,
                decimal(info.bytes),
                retention(info),
                _rate(info.rate),
            )
        )
    stdout().print(table)


def _rate(per_second: float) -> str:
    if per_second == 0:
        return "0/s"
    return f"{per_second:.2f}/s" if per_second < 10 else f"{per_second:.0f}/s"


def _cells(*values: object) -> list[Text]:
    # Text, not str: a name like "[red]" is shown as is, never read as markup.
    return [Text(str(value)) for value in values]


def retention(info: TopicInfo) -> str:
    """``forever``, or what limits the topic: ``7d``, ``1.0 GB/partition``, ``compact``."""
    parts = []
    if info.retention_seconds is not None:
        parts.append(format_duration(info.retention_seconds))
    if info.retention_bytes is not None:
        parts.append(f"{decimal(info.retention_bytes)}/partition")
    if info.compact:
        parts.append("compact")
    return ", ".join(parts) or "forever"


def _topic_object(info: TopicInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "partitions": info.partitions,
        "events": info.events,
        "bytes": info.bytes,
        "retention_seconds": info.retention_seconds,
        "retention_bytes": info.retention_bytes,
        "compact": info.compact,
        "rate": info.rate,
    }


async def _list_topics(url: str | None) -> list[TopicInfo]:
    async with inspecting(url) as broker:
        return await broker.list_topics()


def groups(as_json: JsonOption = False, broker: BrokerOption = None) -> None:
    """List consumer groups: live members, and per partition committed, head, lag and owner."""
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
        table = Table(box=None, pad_edge=False)
        for column in ("topic", "partition", "committed", "head", "lag", "owner"):
            table.add_column(column, justify="left" if column in ("topic", "owner") else "right")
        for part in info.partitions:
            table.add_row(
                *_cells(
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
    async with inspecting(url) as broker:
        return await broker.list_groups()
