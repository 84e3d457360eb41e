"""Waiting for the shop to settle, then checking its invariants: in process or from outside.

:class:`Auditor` reads the event log as it grows (:class:`EventLog`), folds
it into :class:`~tidings.examples.shop.invariants.Facts` and decides when the
shop has settled: no new events, consumers caught up (group lag 0 where the
broker can be inspected; the in-process demo also asks its apps), and either
every invariant holds or nothing has moved for a while. From outside a
multi-process shop::

    python -m tidings.examples.shop.check --broker sqlite:///./shop.db --orders 100

prints the summary and exits 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tidings.broker import Broker
from tidings.brokers import from_url
from tidings.examples.shop.config import ShopConfig, outbox_for
from tidings.examples.shop.eventlog import EventLog
from tidings.examples.shop.events import ALL_TOPICS, ORDER_TIMEOUTS
from tidings.examples.shop.invariants import Check, Facts, check
from tidings.examples.shop.mailer import Outbox
from tidings.inspection import Inspectable
from tidings.settings import default_broker_url

__all__ = ["Auditor", "Verdict", "main", "summary_lines"]

#: A shop that has not moved for this long is settled, even if a check fails.
QUIET = 2.0
_POLL = 0.1


@dataclass
class Verdict:
    checks: list[Check]
    facts: Facts
    emails: Counter[str] = field(default_factory=Counter)
    settled: bool = True

    @property
    def ok(self) -> bool:
        return self.settled and all(c.ok for c in self.checks)


class Auditor:
    """Follows the event log of a shop on ``broker``; the emails are in ``outbox``."""

    def __init__(
        self, broker: Broker, outbox: Path, idle: Callable[[], bool] | None = None
    ) -> None:
        self.broker = broker
        self.outbox = outbox
        self.idle = idle or (lambda: True)
        self.facts = Facts()
        self.log = EventLog(broker, ALL_TOPICS)

    async def poll(self) -> int:
        """Read what is new in the log; return how many events that was."""
        return self.facts.add(await self.log.read_new())

    async def lag(self) -> dict[str, int] | None:
        """Lag of every consumer group with live members (None: the broker cannot tell).

        The saga's timeouts do not count: each waits in the broker until its
        time, and most are then ignored (the order completed long before).
        """
        if not isinstance(self.broker, Inspectable):
            return None
        return {
            g.name: sum(p.lag for p in g.partitions if p.topic != ORDER_TIMEOUTS)
            for g in await self.broker.list_groups()
            if g.members
        }

    def verdict(self) -> Verdict:
        emails = Outbox.read(self.outbox)
        return Verdict(check(self.facts, emails), self.facts, emails)

    async def settle(self, timeout: float, expected_orders: int = 0) -> Verdict:
        """Wait until the shop settles (or ``timeout``), then check it."""
        deadline = time.monotonic() + timeout
        calm_since: float | None = None
        while True:
            new = await self.poll()
            lag = await self.lag()
            now = time.monotonic()
            if new == 0 and self.idle() and not any((lag or {}).values()):
                verdict = self.verdict()
                enough = len(self.facts.orders) >= expected_orders
                calm_since = now if calm_since is None else calm_since
                if (enough and verdict.ok) or now - calm_since >= QUIET:
                    return verdict
            else:
                calm_since = None
            if now >= deadline:
                verdict = self.verdict()
                verdict.settled = False
                return verdict
            await asyncio.sleep(_POLL)

    async def close(self) -> None:
        await self.log.close()


def summary_lines(verdict: Verdict) -> list[str]:
    """The outcome of a run in a few plain lines, the checks last (``ok`` / ``FAIL``)."""
    f = verdict.facts
    shipped = len(f.confirmed & f.shipped)
    rejected = sum(1 for r in f.stock.orders.values() if r.status == "rejected")
    released = sum(1 for r in f.stock.orders.values() if r.status == "released")
    late = len(f.refunded)
    levels = f.stock.levels().values()
    added, on_hand, reserved, out = (sum(v[i] for v in levels) for i in range(4))
    lines = [
        f"orders: {len(f.orders)} placed, {shipped} confirmed and shipped, "
        f"{len(f.cancelled)} cancelled ({rejected} out of stock, {released} payment failed "
        f"or timed out), {len(f.open_orders())} open; {late} late payment(s) refunded",
        f"stock: {added} units added, {out} shipped, {on_hand} on hand, {reserved} reserved",
        f"emails: {sum(verdict.emails.values())} sent; fraud: {len(f.flagged)} customer(s) "
        f"flagged; dead letters: {sum(f.dead_letters.values())} "
        f"(poison events: {len(f.poison)})",
        f"events stored: {sum(f.events.values())} "
        f"({', '.join(f'{t} {n}' for t, n in sorted(f.events.items()))})",
    ]
    if not verdict.settled:
        lines.append("FAIL  the shop did not settle before the timeout")
    for c in verdict.checks:
        lines.append(f"{'ok  ' if c.ok else 'FAIL'}  {c.label}")
        if c.detail:
            lines.append(f"      {c.detail}")
    return lines


async def _check(url: str, outbox: Path, orders: int, timeout: float) -> Verdict:
    broker = from_url(url)
    await broker.connect()
    auditor = Auditor(broker, outbox)
    try:
        return await auditor.settle(timeout, orders)
    finally:
        await auditor.close()
        await broker.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tidings.examples.shop.check``: exit 0 when every invariant holds."""
    parser = argparse.ArgumentParser(prog="python -m tidings.examples.shop.check")
    parser.add_argument("--broker", help="broker URL (default: TIDINGS_BROKER)")
    parser.add_argument("--outbox", type=Path, help="the mailer's outbox (default: SHOP_OUTBOX)")
    parser.add_argument("--orders", type=int, default=0, help="wait until this many are placed")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    url = args.broker or default_broker_url()
    outbox = args.outbox or ShopConfig.from_env().outbox or outbox_for(url)
    verdict = asyncio.run(_check(url, outbox, args.orders, args.timeout))
    for line in summary_lines(verdict):
        print(line)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
