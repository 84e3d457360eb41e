"""What an App says about itself: running, degraded (a subscription restarting), failed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Health"]

Status = Literal["new", "running", "degraded", "failed", "stopped"]


@dataclass(frozen=True)
class Health:
    """``App.health``: the app's status and each subscription's state.

    ``degraded``: a subscription is restarting after a broker error;
    ``failed``: a subscription stopped for good (``errors`` says why).
    """

    status: Status
    subscriptions: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status == "running"
