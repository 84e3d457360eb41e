"""Keeping what a member holds, and letting go of what it lost.

``keep_extended`` extends every unsettled delivery (running, or waiting
behind its key) every ``ack_wait / 2`` seconds, so a broker with ack deadlines
does not hand it to another member meanwhile. ``forget_revoked`` handles the
broker's revocation: the slots, timers, key holds and ready entries of lost
deliveries are dropped, and keys they held are freed; the new owner receives
them, in key order. ``release_unstarted`` gives back, at a stop or restart,
what never reached a handler, so it keeps its attempt count.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.broker import Delivery, Releasable

if TYPE_CHECKING:
    from tidings._consumer import Consumer

__all__ = ["forget_revoked", "keep_extended", "release_unstarted"]

log = logging.getLogger("tidings.consumer")


def forget_revoked(consumer: Consumer, deliveries: Sequence[Delivery]) -> None:
    """The broker took these deliveries back: forget them (another member gets them)."""
    lost = set(deliveries)
    for d in deliveries:
        consumer.flow.release(d)
        consumer.timers.cancel(d)
        consumer.delays.set_aside.discard(d)
    lost_ready = [item for item in consumer.ready if item[0] in lost]
    if lost_ready:
        consumer.ready = deque(item for item in consumer.ready if item[0] not in lost)
    keys = consumer.keys
    if keys is not None:
        lost_ids = {d.id for d in deliveries}
        _dropped, runnable = keys.revoke(lambda item: item[0] in lost, lost_ids.__contains__)
        consumer.ready.extend(runnable)
        # A ready event heads its key's lane: dropping it must free the lane too.
        for d, _event in lost_ready:
            if d.key is not None:
                following = keys.finish((d.topic, d.key))
                if following is not None:
                    consumer.ready.append(following)
    log.info("%s: %d unsettled event(s) revoked by the broker", consumer.sub.name, len(lost))
    if consumer.sub.concurrency > 1 and consumer.state == "running":
        consumer.pump()


async def keep_extended(consumer: Consumer) -> None:
    """Extend every unsettled delivery each ``ack_wait / 2`` seconds, until cancelled."""
    period = consumer.sub.ack_wait / 2
    while True:
        await asyncio.sleep(period)
        for delivery in list(consumer.flow.unsettled):
            try:
                await delivery.extend()
            except Exception as exc:
                log.warning("%s: extending %s failed: %r", consumer.sub.name, delivery, exc)


async def release_unstarted(consumer: Consumer) -> None:
    """Give back deliveries fetched but never handed to a handler (stop, restart).

    A broker that counts attempts durably then redelivers them with the same
    attempt number: waiting behind a key or in the prefetch is not a handling.
    """
    held = [d for d, _event in consumer.ready]
    if consumer.keys is not None:
        held.extend(d for d, _event in consumer.keys.waiting())
    held.extend(consumer.delays.set_aside)
    consumer.delays.set_aside.clear()
    for d in held:
        if isinstance(d, Releasable) and not d.settled:
            consumer.flow.release(d)
            try:
                await d.release()
            except Exception as exc:  # it is redelivered anyway, one attempt higher
                log.warning("%s: releasing %s failed: %r", consumer.sub.name, d, exc)
