"""How the operational commands print: times, JSON lines, tables and events as text."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from tidings._times import format_time
from tidings.cli._errors import stderr
from tidings.codec import Codec
from tidings.event import Event

__all__ = [
    "cells",
    "compact",
    "echo",
    "event_object",
    "format_duration",
    "format_time",
    "json_line",
    "note",
    "stdout",
    "warn",
]

_codec = Codec()


def stdout() -> Console:
    """A console on stdout for tables; piped output is never cut to 80 columns."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=400)
    return console


def cells(*values: object) -> list[Text]:
    """Table cells: Text, not str, so a name like "[red]" is shown as is, never read as markup."""
    return [Text(str(value)) for value in values]


def echo(line: str) -> None:
    """Print one line on stdout at once (a follower may be reading it live)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> str:
    """``value`` as compact JSON on one line (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def format_duration(seconds: float) -> str:
    """``604800`` -> ``7d``, ``5400`` -> ``90m``, ``1.5`` -> ``1.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def event_object(event: Event) -> dict[str, Any]:
    """The event as its CloudEvents JSON object (structured mode)."""
    value: dict[str, Any] = json.loads(_codec.encode_structured(event))
    return value


def compact(value: Any, width: int = 200) -> str:
    """``value`` as compact JSON (bytes as their size), cut to ``width`` characters."""
    if isinstance(value, bytes | bytearray | memoryview):
        text = f"<{len(value)} bytes>"
    else:
        try:
            text = json_line(value)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def note(message: str, label: str = "tidings:", style: str = "bold green") -> None:
    """Print ``<label> <message>`` on stderr (never read as markup)."""
    stderr().print(Text.assemble((label, style), " ", message))


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr."""
    note(message, "warning:", "bold yellow")
