"""The nemesis: seeded actions against the workers at seeded intervals.

Kinds are dealt from a shuffled deck built from the mix, so every kind with
a weight shows up in proportion even in a short run. Victims are chosen
among the live workers of the kind's role that are not paused. A paused
consumer (SIGSTOP) is resumed (SIGCONT) after its planned pause, longer
than the session timeout: a zombie that wakes up after its partitions moved.
Killed (SIGKILL) and terminated (SIGTERM, graceful) workers are restarted
at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from .config import ActionKind, RunConfig
from .workers import Worker, Workers

__all__ = ["Action", "Nemesis"]


@dataclass(frozen=True)
class Action:
    at: float
    """Seconds since the start of the run."""
    kind: ActionKind
    victim: str
    seconds: float = 0.0
    """How long the victim was to stay paused (cut short when the chaos phase ends),
    or took to stop gracefully."""
    wall: float = 0.0
    """Unix time of the action (to match the workers' logs)."""
    pid: int = 0


@dataclass
class Nemesis:
    config: RunConfig
    workers: Workers
    rng: random.Random
    actions: list[Action] = field(default_factory=list)
    _deck: list[ActionKind] = field(default_factory=list)
    _waking: set[asyncio.Task[None]] = field(default_factory=set)

    def _draw(self) -> ActionKind | None:
        if not self._deck:
            self._deck = [kind for kind, n in self.config.mix.items() for _ in range(n)]
            self.rng.shuffle(self._deck)
        return self._deck.pop() if self._deck else None

    def _interval(self) -> float:
        low, high = self.config.interval
        return self.rng.uniform(low, high)

    async def run(self, start: float, until: float) -> None:
        """Act from now until monotonic time ``until``; then resume every paused worker."""
        limit = self.config.max_actions
        due = time.monotonic() + self._interval()
        try:
            while time.monotonic() < until:
                now = time.monotonic()
                self.workers.reap()
                if now >= due and (limit is None or len(self.actions) < limit):
                    await self._strike(start)
                    due = now + self._interval()
                await asyncio.sleep(0.02)
        finally:
            for task in list(self._waking):
                task.cancel()
            await asyncio.gather(*self._waking, return_exceptions=True)

    async def _wake(self, worker: Worker, after: float) -> None:
        # A task of its own: a paused worker may hold a lock that a graceful stop
        # the nemesis is waiting for needs, so waking must not wait for the nemesis.
        try:
            await asyncio.sleep(after)
        finally:
            if worker.alive and worker.paused:
                self.workers.resume(worker)

    async def _strike(self, start: float) -> None:
        kind = self._draw()
        if kind is None:
            return
        role, pool = (
            ("consumer", self.workers.consumers)
            if kind.endswith("consumer")
            else ("producer", self.workers.producers)
        )
        candidates = [w for w in pool if w.alive and not w.paused]
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        at, wall = time.monotonic(), time.time()
        seconds = 0.0
        if kind.startswith("kill"):
            self.workers.kill(victim)
            self.workers.restart(victim)
        elif kind.startswith("term"):
            await self.workers.terminate(victim)
            seconds = time.monotonic() - at
            self.workers.restart(victim)
        else:
            assert role == "consumer", kind
            low, high = self.config.pause_factor
            seconds = self.config.session_timeout * self.rng.uniform(low, high)
            self.workers.pause(victim)
            task = asyncio.create_task(self._wake(victim, seconds))
            self._waking.add(task)
            task.add_done_callback(self._waking.discard)
        pid = victim.process.pid
        self.actions.append(Action(at - start, kind, victim.name, seconds, wall, pid))
