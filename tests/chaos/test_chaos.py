"""The short chaos runs of the test suite: one per guarantee on the embedded broker, one on Redis.

Three producers and three consumers (``tidings run``) of one group, about
ten seconds of seeded SIGKILLs, SIGSTOP zombies past the session timeout and
SIGTERMs of both, then a drain. ``make chaos`` is the long run.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from pathlib import Path

import pytest

from .config import ACTION_KINDS, Delivery, RunConfig
from .report import rows
from .runner import Result, run

SECONDS = 11.0


def chaos(tmp_path: Path, delivery: Delivery, seed: int, broker: str | None = None) -> Result:
    config = RunConfig(
        workdir=tmp_path,
        broker_url=broker,
        delivery=delivery,
        seconds=SECONDS,
        seed=seed,
        mix=dict.fromkeys(ACTION_KINDS, 1),
        interval=(0.4, 0.9),
        quiet_timeout=60.0,
    )
    return asyncio.run(run(config))


def describe(result: Result) -> str:
    lines = [f"{what}: {value}" for what, value in rows(result)]
    lines += [f"{a.at:.2f} s {a.kind} {a.victim} ({a.seconds:.2f} s)" for a in result.actions]
    return "\n".join([*lines, *result.problems(), f"logs in {result.config.workdir}"])


@pytest.mark.slow
@pytest.mark.parametrize(("delivery", "seed"), [("at_least_once", 11), ("exactly_once", 12)])
def test_a_group_under_a_nemesis_loses_nothing_and_keeps_key_order(
    tmp_path: Path, delivery: Delivery, seed: int
) -> None:
    result = chaos(tmp_path, delivery, seed)
    verdict = result.verdict
    report = describe(result)
    kinds = Counter(action.kind for action in result.actions)
    assert set(kinds) == set(ACTION_KINDS), report
    assert verdict.acknowledged > 200 and verdict.handled >= verdict.acknowledged, report
    assert verdict.lost == [] and verdict.unhandled == [], report
    assert verdict.order_violations == [], report
    assert verdict.lag.zero, report
    if delivery == "exactly_once":
        assert verdict.duplicate_effects == [] and verdict.missing_effects == [], report
    assert result.crashes == [] and result.slow_stops == [], report
    assert result.problems() == [], report


#: A database of the system Redis of its own, emptied before and after.
REDIS = "redis://127.0.0.1:6379/6"


async def _flush(url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.mark.slow
def test_a_redis_group_under_a_nemesis_loses_nothing_and_keeps_key_order(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", 6379)) != 0:
            reason = "no Redis server on 127.0.0.1:6379"
            if os.environ.get("TIDINGS_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{reason} (TIDINGS_REQUIRE_SERVICES=1)")
            pytest.skip(reason)
    asyncio.run(_flush(REDIS))
    try:
        result = chaos(tmp_path, "at_least_once", 21, f"{REDIS}?session_timeout=1.5&heartbeat=0.25")
    finally:
        asyncio.run(_flush(REDIS))
    verdict = result.verdict
    report = describe(result)
    assert verdict.acknowledged > 200 and verdict.handled >= verdict.acknowledged, report
    assert verdict.lost == [] and verdict.unhandled == [], report
    assert verdict.order_violations == [], report
    assert verdict.lag.zero, report
    assert result.problems() == [], report
