"""Fetching helpers shared by the conformance suites."""

from __future__ import annotations

import time

from tidings.broker import Delivery, Subscription

__all__ = ["collect", "quiet"]


async def collect(
    subscription: Subscription,
    count: int,
    *,
    timeout: float = 10.0,
    ack: bool = True,
) -> list[Delivery]:
    """Fetch until ``count`` deliveries arrived (or ``timeout``), acking each if ``ack``."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        batch = await subscription.fetch(min(count - len(out), 500), min(remaining, 1.0))
        for delivery in batch:
            out.append(delivery)
            if ack:
                await delivery.ack()
    return out


async def quiet(subscription: Subscription, seconds: float = 0.3) -> list[Delivery]:
    """Whatever arrives within ``seconds`` (expected: nothing)."""
    return list(await subscription.fetch(100, seconds))
