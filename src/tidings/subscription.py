"""A subscription's settings: what to consume, as which group, and how."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from tidings.errors import ConfigurationError
from tidings.filters import Filter
from tidings.middleware import HandlerMiddleware
from tidings.retry import RetryPolicy
from tidings.routing import validate_topic

__all__ = ["DeliveryGuarantee", "Ordering", "Subscription"]

DeliveryGuarantee: TypeAlias = Literal["at_most_once", "at_least_once", "exactly_once"]
Ordering: TypeAlias = Literal["key", "none"]
_GUARANTEES = ("at_most_once", "at_least_once", "exactly_once")


@dataclass(frozen=True)
class Subscription:
    """One handler reading ``topics`` as consumer ``group``.

    * ``delivery``: ``at_most_once`` (ack before handling), ``at_least_once``
      (ack after success; the default) or ``exactly_once`` (follow-ups, dedup
      record and ack commit atomically; needs a transactional broker).
    * ``ordering``: ``"key"`` keeps per-key order even across retries (later
      events of a key wait behind a retry; other keys flow); ``"none"`` lets
      them overtake.
    * ``concurrency``: handlers running at once (never two of one key under
      ``ordering="key"``). ``prefetch``: events taken but not yet settled.
    * ``batch_size``: set for batch handlers (taking a list): up to that many
      events per call, waiting at most ``batch_timeout`` seconds to fill it.
    * ``ack_wait``: seconds the broker keeps an unsettled event with this
      member; the app extends it while a handler runs or the event waits
      behind its key.
    * ``replies``: the handler answers requests (its return value is the
      reply), so its return type needs no route; the app checks the return
      types of the others against the routing table at start.
    """

    handler: Callable[..., Any]
    topics: tuple[str, ...]
    group: str
    name: str
    delivery: DeliveryGuarantee = "at_least_once"
    filter: Filter | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 1
    prefetch: int = 256
    ordering: Ordering = "key"
    start: Literal["earliest", "latest"] = "earliest"
    batch_size: int = 100
    batch_timeout: float = 0.05
    ack_wait: float = 30.0
    middleware: Sequence[HandlerMiddleware] = ()
    replies: bool = False

    def __post_init__(self) -> None:
        if not self.topics:
            raise ConfigurationError(f"subscription {self.name!r} needs at least one topic")
        for topic in self.topics:
            validate_topic(topic, pattern=True)
        if not self.group:
            raise ConfigurationError("a consumer group name must be a non-empty string")
        if self.delivery not in _GUARANTEES:
            raise ConfigurationError(
                f"delivery must be one of {', '.join(_GUARANTEES)}; got {self.delivery!r}"
            )
        if self.ordering not in ("key", "none"):
            raise ConfigurationError(f"ordering must be 'key' or 'none'; got {self.ordering!r}")
        if self.start not in ("earliest", "latest"):
            raise ConfigurationError(f"start must be 'earliest' or 'latest'; got {self.start!r}")
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        if self.prefetch < 1:
            raise ConfigurationError("prefetch must be >= 1")
        if self.batch_size < 1 or self.batch_timeout < 0:
            raise ConfigurationError("batch_size must be >= 1 and batch_timeout >= 0")
        if self.ack_wait <= 0:
            raise ConfigurationError("ack_wait must be > 0 seconds")
        if self.prefetch < self.concurrency:
            raise ConfigurationError("prefetch must be at least concurrency")
