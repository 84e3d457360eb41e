"""How a running shop looks: the live screen (rich) and the plain progress lines.

:class:`Screen` turns :class:`~tidings.examples.shop.system.Snapshot` values
into a rich renderable (per-service counters with lag, events per second per
topic, the order funnel) or, without a terminal, one line of text.
"""

from __future__ import annotations

from collections import deque

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tidings.examples.shop.check import Verdict, summary_lines
from tidings.examples.shop.events import ALL_TOPICS
from tidings.examples.shop.system import Snapshot

__all__ = ["Screen", "summary"]

#: Events per second are measured over this many seconds.
RATE_WINDOW = 1.0


class Screen:
    """Keeps recent snapshots, to show rates; renders the latest."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._history: deque[Snapshot] = deque()

    def add(self, snapshot: Snapshot) -> Snapshot:
        self._history.append(snapshot)
        while len(self._history) > 2 and (
            snapshot.elapsed - self._history[1].elapsed >= RATE_WINDOW
        ):
            self._history.popleft()
        return snapshot

    def rates(self) -> dict[str, float]:
        """Events per second per topic, over the last second or so."""
        if len(self._history) < 2:
            return {}
        first, last = self._history[0], self._history[-1]
        span = last.elapsed - first.elapsed
        if span <= 0:
            return {}
        return {
            topic: (count - first.topics.get(topic, 0)) / span
            for topic, count in last.topics.items()
        }

    def line(self, s: Snapshot) -> str:
        """One progress line, for a log or a pipe."""
        target = f"/{s.target}" if s.target else ""
        lag = "n/a" if s.lag is None else str(s.lag)
        rate = sum(self.rates().values())
        return (
            f"[{s.elapsed:6.1f}s] placed {s.placed}{target}, confirmed {s.confirmed}, "
            f"shipped {s.shipped}, cancelled {s.cancelled} | emails {s.emails} | "
            f"retries {s.retries} | DLQ {s.dead_letters} | fraud flags {s.flagged} | "
            f"lag {lag} | {rate:.0f} events/s"
        )

    def render(self, s: Snapshot) -> RenderableType:
        target = f"/{s.target}" if s.target else ""
        header = Text.assemble(
            (self.title, "bold"),
            f"   {s.elapsed:.1f}s\n",
            ("orders ", "bold"),
            f"{s.placed}{target} placed ({s.orders_per_second:.1f}/s), ",
            (f"{s.confirmed} confirmed", "green"),
            ", ",
            (f"{s.shipped} shipped", "green"),
            ", ",
            (f"{s.cancelled} cancelled", "yellow"),
            f"   revenue {s.revenue:,.2f} EUR, conversion {s.conversion:.1%}\n",
            f"emails {s.emails}   fraud flags {s.flagged}   ",
            (f"retries {s.retries}", "yellow" if s.retries else ""),
            "   ",
            (f"DLQ {s.dead_letters}", "red" if s.dead_letters else ""),
            f"   poison sent {s.poison}",
        )
        tables = Table.grid(padding=(0, 2))
        tables.add_row(self._services(s), self._topics(s))
        return Group(header, tables)

    def _services(self, s: Snapshot) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="services", title_justify="left")
        table.add_column("service")
        for name in ("handled", "failed", "retried", "dead-lettered", "lag"):
            table.add_column(name, justify="right")
        for row in s.services:
            if not row.running:
                table.add_row(row.name, Text("not started yet (joins late)", style="dim"))
                continue
            lag = "n/a" if row.lag is None else str(row.lag)
            table.add_row(
                row.name,
                str(row.handled),
                str(row.failed),
                str(row.retried),
                Text(str(row.dead_lettered), style="red" if row.dead_lettered else ""),
                lag,
            )
        return table

    def _topics(self, s: Snapshot) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="topics", title_justify="left")
        table.add_column("topic")
        table.add_column("events", justify="right")
        table.add_column("events/s", justify="right")
        rates = self.rates()
        for topic in ALL_TOPICS:
            table.add_row(topic, str(s.topics.get(topic, 0)), f"{rates.get(topic, 0.0):.0f}")
        return table


def summary(verdict: Verdict, elapsed: float) -> Text:
    """The final report: outcome counts, then each check as ``ok`` or ``FAIL``."""
    text = Text()
    for line in summary_lines(verdict):
        if line.startswith("ok  "):
            text.append("ok  ", "green").append(line[4:] + "\n")
        elif line.startswith("FAIL"):
            text.append("FAIL", "bold red").append(line[4:] + "\n")
        else:
            text.append(line + "\n")
    outcome = "every invariant holds" if verdict.ok else "some invariants FAILED"
    text.append(f"done in {elapsed:.1f}s: {outcome}", "bold" if verdict.ok else "bold red")
    return text
