"""A deadline on a future, as a timer: cheaper than ``asyncio.wait_for`` on hot paths.

``wait_for`` wraps every wait in its own machinery; where one future is
awaited per request or per publish, a timer that fails the future with
``TimeoutError`` does the same job. Cancel the returned handle once the
future is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["expire_after"]


def expire_after(delay: float, future: asyncio.Future[Any]) -> asyncio.TimerHandle:
    """Fail ``future`` with ``TimeoutError`` after ``delay`` seconds unless it is done by then."""
    return asyncio.get_running_loop().call_later(delay, _expire, future)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
