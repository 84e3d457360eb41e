"""The causal tree: which events make a flow, and each group's outcome from its records."""

from __future__ import annotations

from datetime import UTC, datetime

from tidings import Event
from tidings.causal import Stored, build
from tidings.compensation import compensating
from tidings.deadletter import DeadLetter
from tidings.outcomes import Handling, Outcome

ROOT = Event(type="OrderPlaced", source="/orders", id="root")
RESERVED = ROOT.derive(None, type="Reserved", source="/stock", id="reserved")
MAILED = ROOT.derive(None, type="Mailed", source="/mail", id="mailed")
RELEASE = RESERVED.derive(
    None, type="Release", source="/saga", id="release", extensions=compensating("root")
)
OTHER = Event(type="OrderPlaced", source="/orders", id="other")


def _stored(event: Event, offset: int, topic: str = "t") -> Stored:
    return Stored(event, topic, 0, offset, 100.0 + offset)


EVENTS = [
    _stored(ROOT, 0),
    _stored(RESERVED, 1),
    _stored(MAILED, 2),
    _stored(RELEASE, 3),
    _stored(OTHER, 4),
]


def _record(
    app: str,
    offset: int,
    attempt: int,
    outcome: Outcome,
    at: float,
    seconds: float | None = None,
    error: str | None = None,
    dead_letter_topic: str | None = None,
) -> Handling:
    return Handling(
        app, "s", f"{app}.s", "t", 0, offset, attempt, outcome, at, 100.0 + offset,
        seconds=seconds, error=error, dead_letter_topic=dead_letter_topic, source=f"/{app}",
    )  # fmt: skip


def test_a_correlation_id_takes_the_flow_and_an_event_id_its_subtree() -> None:
    flow = build("root", EVENTS)
    assert flow is not None and flow.matched == "correlationid"
    [root] = flow.roots
    assert [c.event.id for c in root.children] == ["reserved", "mailed"]
    assert [c.event.id for c in root.children[0].children] == ["release"]
    below = build("reserved", EVENTS)
    assert below is not None and below.matched == "id"
    assert [n.event.id for n in below.nodes()] == ["reserved", "release"]
    assert build("nothing", EVENTS) is None


def test_outcomes_from_records_count_retries_and_time_the_handling_that_succeeded() -> None:
    records = [
        _record("stock", 0, 2, "handled", 110.5, seconds=0.5),
        _record("stock", 0, 1, "retried", 105.0, error="E()"),
        _record("mail", 2, 1, "retried", 103.0, error="E()"),
    ]
    flow = build("root", EVENTS, handlings=records)
    assert flow is not None
    [stock] = flow.roots[0].groups
    assert (stock.group, stock.outcome, stock.attempts, stock.retries) == (
        "stock.s",
        "handled",
        2,
        1,
    )
    assert (stock.waited, stock.took) == (10.0, 0.5)
    [mail] = flow.roots[0].children[1].groups
    assert (mail.outcome, mail.retries) == ("retrying", 1)


def test_a_dead_letter_without_records_and_a_redriven_event_handled_later() -> None:
    letter = DeadLetter(
        value=b"", headers={}, error_type="builtins.ValueError", error_message="boom",
        attempts=3, first_failure=datetime.now(UTC), last_failure=datetime.now(UTC),
        origin_topic="t", origin_partition=0, origin_offset=2, origin_group="mail.s",
        subscription="s",
    )  # fmt: skip
    flow = build("root", EVENTS, dead_letters=[letter])
    assert flow is not None
    [mail] = flow.roots[0].children[1].groups
    assert (mail.outcome, mail.attempts, mail.retries) == ("dead_lettered", 3, 2)
    assert (mail.error, mail.dead_letter_topic) == ("ValueError: boom", "t.dlq")

    redriven = [*EVENTS, _stored(MAILED, 9)]  # the same event, stored again
    records = [
        _record("mail", 2, 1, "dead_lettered", 103.0, error="E()", dead_letter_topic="t.dlq"),
        _record("mail", 9, 1, "handled", 120.0, seconds=0.1),
    ]
    flow = build("root", redriven, handlings=records)
    assert flow is not None
    mailed = flow.roots[0].children[1]
    assert [c.event.id for c in flow.roots[0].children] == ["reserved", "mailed"]
    assert [(g.outcome, g.attempts) for g in mailed.groups] == [("handled", 1)]


def test_a_compensation_marks_the_handling_that_had_the_effect() -> None:
    records = [
        _record("stock", 0, 1, "handled", 101.0, seconds=0.1),  # reserved: emitted Reserved
        _record("audit", 0, 1, "handled", 101.0, seconds=0.1),  # only looked
        _record("stock", 3, 1, "handled", 104.0, seconds=0.1),  # released
        _record("audit", 3, 1, "handled", 104.0, seconds=0.1),
    ]
    flow = build("root", EVENTS, handlings=records)
    assert flow is not None
    [root] = flow.roots
    assert [c.event.id for c in root.compensated_by] == ["release"]
    outcomes = {g.group: (g.outcome, g.compensated_by) for g in root.groups}
    assert outcomes == {"audit.s": ("handled", None), "stock.s": ("compensated", "release")}


def test_groups_without_records_are_placed_by_their_committed_offsets() -> None:
    records = [_record("stock", 0, 1, "handled", 101.0, seconds=0.1)]
    committed = {
        "stock.s": {("t", 0): 5},
        "audit.s": {("t", 0): 2},  # read past offsets 0 and 1, not 2 and later
        "elsewhere.s": {("u", 0): 9},
    }
    flow = build("root", EVENTS, handlings=records, committed=committed)
    assert flow is not None
    [root] = flow.roots
    _, mailed = root.children
    assert [(g.group, g.outcome) for g in root.groups] == [
        ("stock.s", "handled"),
        ("audit.s", "committed"),
    ]
    assert [(g.group, g.outcome) for g in mailed.groups] == [
        ("audit.s", "pending"),
        ("stock.s", "committed"),
    ]
