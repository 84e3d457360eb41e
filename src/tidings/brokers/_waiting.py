"""Waiting for a wake-up with a deadline (shared by the brokers' ``fetch``)."""

from __future__ import annotations

import asyncio
import time

__all__ = ["wait_until"]


async def wait_until(event: asyncio.Event, deadline: float) -> bool:
    """Wait for ``event`` until ``deadline`` (``time.monotonic``); False once it passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    try:
        await asyncio.wait_for(event.wait(), remaining)
    except TimeoutError:
        return False
    return True
