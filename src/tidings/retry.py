"""Retry policy: when a failed handling is tried again, and when it is dead-lettered."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from typing import Literal

from tidings.errors import (
    ConfigurationError,
    DecodeError,
    Reject,
    Retry,
    SchemaError,
    UnroutableError,
)

__all__ = ["NEVER_RETRY", "Decision", "RetryPolicy"]

#: Errors that cannot succeed on another attempt: always dead-lettered at once.
#: Configuration and routing errors are mistakes in the code (a handler returning
#: a str, a payload type with no topic): another attempt fails the same way.
NEVER_RETRY: tuple[type[BaseException], ...] = (
    DecodeError,
    SchemaError,
    Reject,
    ConfigurationError,
    UnroutableError,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a failed attempt: retry after ``delay`` seconds, or dead-letter."""

    action: Literal["retry", "dead_letter"]
    delay: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap on attempts, and per-exception rules.

    The default: 5 attempts in all; the n-th retry waits up to
    ``initial_delay * multiplier ** (n - 1)`` seconds (0.2 s, 0.4 s, 0.8 s, ...),
    capped at ``max_delay``, with full jitter (a uniform draw between 0 and
    that bound) so that failing consumers do not retry in lock-step.

    ``retry_on`` lists the exceptions worth retrying (default: all);
    ``dead_letter_on`` lists exceptions to dead-letter at once. Decode and
    validation errors and :class:`~tidings.errors.Reject` are always
    dead-lettered at once; :class:`~tidings.errors.Retry` asks for its own delay.
    """

    max_attempts: int = 5
    initial_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: Literal["full", "none"] = "full"
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dead_letter_on: tuple[type[BaseException], ...] = ()
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be >= 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("retry delays must be >= 0")
        if self.multiplier < 1:
            raise ConfigurationError("multiplier must be >= 1")
        if self.jitter not in ("full", "none"):
            raise ConfigurationError("jitter must be 'full' or 'none'")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt only: the first failure dead-letters."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """The delay before the attempt after ``attempt`` (1-based)."""
        bound = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        if self.jitter == "full":
            return self._random.uniform(0.0, bound)
        return bound

    def decide(self, error: BaseException, attempt: int) -> Decision:
        """Decide what follows a failed ``attempt`` (1-based) that raised ``error``."""
        if isinstance(error, (NEVER_RETRY, self.dead_letter_on)):
            return Decision("dead_letter")
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(error, pydantic.ValidationError):
            return Decision("dead_letter")
        if attempt >= self.max_attempts:
            return Decision("dead_letter")
        if isinstance(error, Retry):
            return Decision("retry", error.delay)
        if not isinstance(error, self.retry_on):
            return Decision("dead_letter")
        return Decision("retry", self.backoff(attempt))
