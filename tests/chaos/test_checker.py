"""The checker on hand-made histories: it finds what the chaos runs must never show."""

from __future__ import annotations

import dataclasses

from .checker import check, order_violations
from .history import Handling, History, Lag, Published

DONE = Lag(0, 0)


def handling(event: str, at: int, key: str = "k00", attempt: int = 1) -> Handling:
    return Handling(event, key, attempt, pid=1, at=at, position="0:0")


def history(
    handlings: list[Handling],
    published: int = 3,
    effects: list[str] | None = None,
    lag: Lag = DONE,
) -> History:
    events = [f"p0.0:{n}" for n in range(published)]
    return History(
        published=[Published(e, "k00", acknowledged=True) for e in events],
        handlings=handlings,
        stored=events,
        effects=effects,
        lag=lag,
    )


def test_a_clean_history_has_no_problem() -> None:
    verdict = check(history([handling(f"p0.0:{n}", at=n) for n in range(3)]))
    assert verdict.problems() == []
    assert (verdict.acknowledged, verdict.handled, verdict.duplicates) == (3, 3, 0)
    assert verdict.rehandlings == {1: 3}


def test_an_acknowledged_event_never_handled_is_lost() -> None:
    verdict = check(history([handling("p0.0:0", at=0), handling("p0.0:2", at=2)]))
    assert verdict.lost == ["p0.0:1"]
    assert verdict.unhandled == ["p0.0:1"]
    assert any("lost" in problem for problem in verdict.problems())


def test_a_dead_lettered_event_is_named_as_such() -> None:
    # The chaos handler never fails: a dead letter means attempts ran out without one.
    base = history([handling("p0.0:0", at=0), handling("p0.0:2", at=2)])
    verdict = check(dataclasses.replace(base, dead_lettered=["p0.0:1"]))
    assert verdict.lost == ["p0.0:1"] and verdict.dead_lettered == ["p0.0:1"]
    assert "1 events dead-lettered: p0.0:1" in verdict.problems()


def test_a_stored_event_never_handled_is_reported_even_unacknowledged() -> None:
    unacknowledged = history([handling("p0.0:0", at=0)], published=1)
    unacknowledged = History(
        unacknowledged.published,
        unacknowledged.handlings,
        [*unacknowledged.stored, "p0.0:1"],
        None,
        DONE,
    )
    verdict = check(unacknowledged)
    assert verdict.lost == [] and verdict.unhandled == ["p0.0:1"]


def test_redeliveries_of_earlier_events_may_interleave() -> None:
    handlings = [
        handling("p0.0:0", at=0),
        handling("p0.0:1", at=1),
        handling("p0.0:0", at=2, attempt=2),
        handling("p0.0:1", at=3, attempt=2),
        handling("p0.0:2", at=4),
    ]
    verdict = check(history(handlings))
    assert verdict.order_violations == []
    assert verdict.duplicates == 2 and verdict.rehandlings == {1: 1, 2: 2}


def test_a_first_delivery_overtaking_an_earlier_event_of_its_key_is_a_violation() -> None:
    handlings = [handling("p0.0:0", at=0), handling("p0.0:2", at=1), handling("p0.0:1", at=2)]
    assert order_violations(handlings) == ["k00: p0.0:2 first handled before p0.0:1"]


def test_order_is_per_producer_and_key() -> None:
    handlings = [
        handling("p0.0:1", at=0, key="k01"),
        handling("p0.0:0", at=1, key="k00"),
        handling("p1.0:0", at=2, key="k00"),
        handling("p0.0:2", at=3, key="k00"),
    ]
    assert order_violations(handlings) == []


def test_an_effect_twice_is_a_duplicate_effect_and_a_missing_one_is_reported() -> None:
    handlings = [handling(f"p0.0:{n}", at=n) for n in range(3)]
    verdict = check(history(handlings, effects=["p0.0:0", "p0.0:0", "p0.0:1"]))
    assert verdict.duplicate_effects == ["p0.0:0 x2"]
    assert verdict.missing_effects == ["p0.0:2"]
    assert len(verdict.problems()) == 2


def test_final_lag_and_unread_partitions_are_problems() -> None:
    handlings = [handling(f"p0.0:{n}", at=n) for n in range(3)]
    assert check(history(handlings, lag=Lag(2, 0))).problems() == ["final lag 2"]
    unread = check(history(handlings, lag=Lag(0, 1))).problems()
    assert unread == ["final lag 0, 1 partition(s) unread"]
