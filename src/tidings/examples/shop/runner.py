"""Running the shop in one process while showing it: a live screen, or progress lines.

:func:`run_shop` is what ``tidings demo`` does once its broker is chosen:
start every service, place the orders, wait for the shop to settle, check
the invariants, stop, and print the summary.
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tidings.examples.shop.check import Verdict
from tidings.examples.shop.screen import Screen, summary
from tidings.examples.shop.system import Shop

__all__ = ["SETTLE_TIMEOUT", "run_shop"]

#: How long the shop may take to settle once every order is placed.
SETTLE_TIMEOUT = 60.0
_REFRESH = 0.25
_LINE_EVERY = 1.0


async def run_shop(
    shop: Shop,
    orders: int,
    rate: float,
    *,
    console: Console,
    live: bool,
    stop: asyncio.Event | None = None,
    settle_timeout: float = SETTLE_TIMEOUT,
) -> Verdict:
    """Run ``shop`` (connected, not started) through ``orders`` orders and check it.

    ``live``: a rich live screen, else about one progress line per second.
    Setting ``stop`` ends the placing of orders early; the shop still
    settles and is checked.
    """
    where = shop.url or type(shop.broker).__name__
    what = f"{orders} orders" if orders else "orders until Ctrl-C"
    pace = f"{rate:g}/s" if rate else "as fast as possible"
    console.print(
        Text.assemble(("tidings demo", "bold"), f": {what} at {pace} on {where}"),
        f"(emails go to {shop.outbox}; Ctrl-C stops placing orders)",
    )
    started = time.monotonic()
    screen = Screen(f"the shop on {where}")
    try:
        await shop.start()
        screen.add(await shop.snapshot())  # the baseline of the rates

        async def place_then_settle() -> Verdict:
            await shop.place(orders, rate, stop)
            return await shop.settle(settle_timeout)

        task = asyncio.create_task(place_then_settle())
        try:
            await _follow(shop, screen, task, live, console)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        verdict = task.result()
    finally:
        await shop.stop()
    console.print(summary(verdict, time.monotonic() - started))
    return verdict


async def _follow(
    shop: Shop, screen: Screen, task: asyncio.Task[Verdict], live: bool, console: Console
) -> None:
    if live:
        with Live(console=console, refresh_per_second=1 / _REFRESH) as view:
            while not task.done():
                view.update(screen.render(screen.add(await shop.snapshot())))
                await asyncio.wait({task}, timeout=_REFRESH)
            view.update(screen.render(screen.add(await shop.snapshot())))
        return
    while not task.done():
        await asyncio.wait({task}, timeout=_LINE_EVERY)
        console.print(screen.line(screen.add(await shop.snapshot())))
