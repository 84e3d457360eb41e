"""``tidings topics``: what a broker stores."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.table import Table

from tidings.cli._broker import inspecting
from tidings.cli._options import BrokerOption, JsonLinesOption
from tidings.cli._output import cells, echo, format_duration, json_line, note, stdout
from tidings.inspection import TopicInfo
from tidings.outcomes import is_internal_topic

__all__ = ["topics"]


def topics(
    as_json: JsonLinesOption = False,
    broker: BrokerOption = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Also tidings' own topics (tidings.*: handling records, replies)."
        ),
    ] = False,
) -> None:
    """List topics: partitions, events, bytes, retention and the rate over the last minute."""
    found = asyncio.run(_list_topics(broker))
    if not show_all:
        found = [info for info in found if not is_internal_topic(info.name)]
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
            *cells(
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
    async with inspecting(url, read_only=True) as broker:
        return await broker.list_topics()
