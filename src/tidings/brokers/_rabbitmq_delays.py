"""RabbitMQ delay queues, as both its adapters use them (no client library).

A retry due in ``ms`` milliseconds waits in ``<queue>.delay.<ms>``: a durable
queue whose message TTL is ``ms`` and whose dead-letter target is ``<queue>``
(through the default exchange), so the message goes back to the end of its
queue when its time comes. Delays are rounded up to two significant digits so
that few such queues exist; each expires once unused for a while.
"""

from __future__ import annotations

import math

__all__ = ["delay_arguments", "delay_bucket", "delay_queue"]


def delay_bucket(delay: float) -> int:
    """``delay`` in milliseconds, rounded up to two significant digits (fewer queues)."""
    ms = max(math.ceil(delay * 1000), 1)
    if ms < 100:
        return ms
    step = 10 ** (len(str(ms)) - 2)
    return int(math.ceil(ms / step) * step)


def delay_queue(queue: str, ms: int) -> str:
    """The name of ``queue``'s delay queue for ``ms`` milliseconds."""
    return f"{queue}.delay.{ms}"


def delay_arguments(queue: str, ms: int, expires_ms: int) -> dict[str, int | str]:
    """The arguments of ``queue``'s delay queue for ``ms``: it dead-letters every message
    back to ``queue`` after ``ms``, and is deleted ``expires_ms`` after that when unused."""
    return {
        "x-message-ttl": ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-expires": ms + expires_ms,
    }
