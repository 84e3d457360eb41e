"""The result table of a run (rich)."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from .runner import Result

__all__ = ["rows", "table"]


def _count(items: list[str] | None) -> str:
    return "-" if items is None else str(len(items))


def rows(result: Result) -> list[tuple[str, str]]:
    """(what, value) pairs of the result, in table order."""
    config, verdict = result.config, result.verdict
    kinds = Counter(action.kind for action in result.actions)
    actions = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "none"
    rehandlings = ", ".join(f"{times}x: {n}" for times, n in verdict.rehandlings.items())
    lag = str(verdict.lag.total)
    if verdict.lag.unpositioned:
        lag += f" (+{verdict.lag.unpositioned} partition(s) without a position)"
    return [
        ("broker", result.url),
        ("delivery", config.delivery),
        ("seed", str(config.seed)),
        ("workers", f"{config.producers} producers, {config.consumers} consumers"),
        (
            "duration",
            f"{result.chaos_seconds:.1f} s chaos + {result.quiet_seconds:.1f} s drain",
        ),
        ("actions", f"{len(result.actions)}: {actions}"),
        ("crashes (exits on their own)", str(len(result.crashes))),
        ("graceful stops over the timeout", str(len(result.slow_stops))),
        ("events acknowledged", str(verdict.acknowledged)),
        ("publishes failed (not acknowledged)", str(verdict.publish_failures)),
        ("events stored", str(verdict.stored)),
        ("events handled", str(verdict.handled)),
        ("handlings", str(verdict.handlings)),
        ("duplicate handlings", str(verdict.duplicates)),
        ("effects", "-" if verdict.effects is None else str(verdict.effects)),
        ("duplicate effects", _count(verdict.duplicate_effects)),
        ("handled without effect", _count(verdict.missing_effects)),
        ("lost (acknowledged, never handled)", str(len(verdict.lost))),
        ("stored, never handled", str(len(verdict.unhandled))),
        ("dead-lettered", str(len(verdict.dead_lettered))),
        ("order violations", str(len(verdict.order_violations))),
        ("final lag", lag),
        ("handlings per event", rehandlings or "-"),
        ("verdict", "PASS" if result.ok else "FAIL"),
    ]


def table(result: Result) -> Table:
    out = Table(title=f"chaos run {result.names.run}", show_header=False)
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for what, value in rows(result):
        style = ""
        if what == "verdict":
            style = "bold green" if result.ok else "bold red"
        out.add_row(what, value, style=style)
    return out
