"""Supervision of a subscription: which broker errors are worth a restart, and when to stop.

A subscription whose intake fails with a transient broker error (a lost
connection, an ``OSError``, a publish that did not complete) is restarted
after a backoff: its unsettled events go back to the broker and are delivered
again. After ``max_restarts`` failures in a row (a failure after a healthy
``reset_after`` seconds starts the count again), or on any other error, the
subscription fails for good and the App reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.errors import BrokerClosedError, ConfigurationError, PublishError
from tidings.errors import ConnectionError as BrokerConnectionError

__all__ = ["Supervision", "is_transient"]


def is_transient(error: BaseException) -> bool:
    """True for errors a restart may cure: the broker was unreachable or refused a write."""
    if isinstance(error, BrokerClosedError | ConfigurationError):
        return False
    return isinstance(error, OSError | TimeoutError | BrokerConnectionError | PublishError)


@dataclass(frozen=True)
class Supervision:
    """How hard a subscription tries to recover from broker errors."""

    max_restarts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    reset_after: float = 30.0
    """Seconds of healthy running after which the failure count starts again."""
    drain_timeout: float = 10.0
    """Seconds a restart waits for running handlers before cancelling them."""

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ConfigurationError("supervision settings must be >= 0")

    def backoff(self, failures: int) -> float:
        """Seconds to wait before restart number ``failures`` (1, 2, ...)."""
        return float(min(self.initial_backoff * 2.0 ** (failures - 1), self.max_backoff))
