"""What one chaos run does: broker, delivery, process counts, duration, seed, nemesis mix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_MIX",
    "ActionKind",
    "Delivery",
    "RunConfig",
    "parse_mix",
]

Delivery = Literal["at_least_once", "exactly_once"]
ActionKind = Literal[
    "kill-consumer", "kill-producer", "pause-consumer", "term-consumer", "term-producer"
]
ACTION_KINDS: tuple[ActionKind, ...] = get_args(ActionKind)
DEFAULT_MIX: Mapping[ActionKind, int] = {
    "kill-consumer": 3,
    "kill-producer": 1,
    "pause-consumer": 2,
    "term-consumer": 2,
    "term-producer": 1,
}


@dataclass(frozen=True)
class RunConfig:
    """One run; ``broker_url`` None means a fresh embedded database in ``workdir``.

    ``mix`` weighs the nemesis actions: they are dealt from a shuffled deck
    holding each kind that many times (reshuffled when empty), so a short run
    still sees every kind. ``interval`` bounds the seconds between actions;
    a paused consumer sleeps ``pause_factor`` times the session timeout.
    """

    workdir: Path
    broker_url: str | None = None
    delivery: Delivery = "at_least_once"
    producers: int = 3
    consumers: int = 3
    seconds: float = 300.0
    seed: int = 0
    mix: Mapping[ActionKind, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    max_actions: int | None = None
    interval: tuple[float, float] = (0.5, 3.0)
    session_timeout: float = 1.5
    pause_factor: tuple[float, float] = (1.5, 2.5)
    keys: int = 27
    rate: float = 40.0
    """Events per second per producer."""
    concurrency: int = 4
    work: float = 0.002
    """Seconds each handling sleeps (simulated work)."""
    quiet_timeout: float = 120.0
    """Seconds the group may take to drain once producers stopped."""
    start_timeout: float = 60.0
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.producers < 1 or self.consumers < 1:
            raise ValueError("a run needs at least one producer and one consumer")
        if self.seconds <= 0:
            raise ValueError("seconds must be > 0")
        if not 0 < self.interval[0] <= self.interval[1]:
            raise ValueError("interval must be MIN MAX with 0 < MIN <= MAX")
        if self.keys < 1 or self.rate <= 0:
            raise ValueError("keys must be >= 1 and rate > 0")

    @property
    def url(self) -> str:
        if self.broker_url is not None:
            return self.broker_url
        db = (self.workdir / "chaos.db").resolve()
        heartbeat = round(self.session_timeout / 6, 3)
        return f"sqlite:///{db}?session_timeout={self.session_timeout}&heartbeat={heartbeat}"


def parse_mix(text: str) -> dict[ActionKind, int]:
    """``kill-consumer=3,pause-consumer=2``: weights per action kind (missing: 0).

    ``all`` gives every kind weight 1; ``none`` is an empty mix (no actions).
    """
    if text.strip() == "all":
        return dict.fromkeys(ACTION_KINDS, 1)
    mix: dict[ActionKind, int] = dict.fromkeys(ACTION_KINDS, 0)
    if text.strip() == "none":
        return mix
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        kind = _action_kind(name)
        mix[kind] = int(weight) if weight else 1
        if mix[kind] < 0:
            raise ValueError(f"{name}: a weight must be >= 0")
    return mix


def _action_kind(name: str) -> ActionKind:
    for kind in ACTION_KINDS:
        if kind == name:
            return kind
    raise ValueError(f"unknown nemesis action {name!r}; known: {', '.join(ACTION_KINDS)}")
