"""One chaos run: start the workers, let the nemesis act, drain, stop, check."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

from tidings.broker import Broker
from tidings.brokers import from_url, redact_url
from tidings.inspection import Inspectable

from .checker import Verdict, check
from .config import RunConfig
from .history import History, Lag, group_lag, identities, read_handlings, read_published, read_topic
from .nemesis import Action, Nemesis
from .workers import Crash, Names, Workers

__all__ = ["Result", "run"]


@dataclass(frozen=True)
class Result:
    config: RunConfig
    url: str
    names: Names
    chaos_seconds: float
    quiet_seconds: float
    actions: list[Action]
    crashes: list[Crash]
    slow_stops: list[str]
    verdict: Verdict

    def problems(self) -> list[str]:
        found = self.verdict.problems()
        found += [f"{c.worker} exited on its own ({c.returncode}): {c.tail}" for c in self.crashes]
        if self.slow_stops:
            found.append(f"no graceful stop within the timeout: {', '.join(self.slow_stops)}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()


async def run(config: RunConfig) -> Result:
    """Run ``config`` to the end; every process it started is gone when this returns."""
    rng = random.Random(config.seed)
    names = Names(f"{config.seed}x{uuid.uuid4().hex[:8]}")
    workers = Workers(config, names)
    nemesis = Nemesis(config, workers, rng)
    config.workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        workers.start()
        await nemesis.run(start, start + config.seconds)
        quiet = time.monotonic()
        workers.reap()
        await workers.stop(workers.producers)
        broker = from_url(config.url)
        await broker.connect()
        try:
            if not isinstance(broker, Inspectable):
                raise TypeError(f"{type(broker).__name__} is not Inspectable: it cannot be checked")
            await _drain(broker, config, names, workers)
            await workers.stop(workers.consumers)
            drained = time.monotonic()
            history = await _history(broker, config, names, workers)
        finally:
            await broker.close()
    finally:
        workers.kill_all()
    return Result(
        config=config,
        url=redact_url(config.url),
        names=names,
        chaos_seconds=quiet - start,
        quiet_seconds=drained - quiet,
        actions=nemesis.actions,
        crashes=workers.crashes,
        slow_stops=workers.slow_stops,
        verdict=check(history),
    )


async def _drain(broker: Broker, config: RunConfig, names: Names, workers: Workers) -> None:
    """Wait until the group has consumed everything, or ``quiet_timeout``."""
    deadline = time.monotonic() + config.quiet_timeout
    while time.monotonic() < deadline:
        workers.reap()
        if (await group_lag(broker, names.group, names.topic)).zero:
            return
        await asyncio.sleep(0.2)


async def _history(broker: Broker, config: RunConfig, names: Names, workers: Workers) -> History:
    logs = {
        role: [w.log for w in workers.spawned if w.role == role]
        for role in ("producer", "consumer")
    }
    stored = identities(broker, await read_topic(broker, names.topic))
    effects = None
    if config.delivery == "exactly_once":
        effects = identities(broker, await read_topic(broker, names.output))
    lag: Lag = await group_lag(broker, names.group, names.topic)
    dead = identities(broker, await read_topic(broker, f"{names.topic}.dlq"))
    return History(
        published=read_published(logs["producer"]),
        handlings=read_handlings(logs["consumer"]),
        stored=stored,
        effects=effects,
        lag=lag,
        dead_lettered=dead,
    )
