"""The causal tree of a flow: stored events joined with what each group did with them.

Pure: given the stored events, the dead letters and the handling records,
:func:`build` finds the events of a flow (one correlation id, or one event
and what it caused) and sums up each consumer group's attempts per event.
Reading the broker and printing are ``tidings trace``'s part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from tidings.compensation import compensated_id
from tidings.deadletter import DeadLetter, dead_letter_topic
from tidings.event import Event
from tidings.outcomes import Handling

__all__ = ["Flow", "GroupOutcome", "Node", "Stored", "build"]

Position: TypeAlias = tuple[str, int, int]
GroupState: TypeAlias = Literal[
    "handled", "compensated", "dead_lettered", "retrying", "committed", "pending"
]
#: Per consumer group, per (topic, partition), the offset it reads next.
Committed: TypeAlias = Mapping[str, Mapping[tuple[str, int], int]]


@dataclass(frozen=True)
class Stored:
    """An event as a topic stores it."""

    event: Event
    topic: str
    partition: int
    offset: int
    published_at: float

    @property
    def position(self) -> Position:
        return (self.topic, self.partition, self.offset)


@dataclass
class GroupOutcome:
    """What one consumer group made of an event, over all its attempts."""

    group: str
    app: str | None
    outcome: GroupState
    attempts: int
    retries: int
    waited: float | None = None
    """Seconds from the event being stored to the start of the handling that succeeded."""
    took: float | None = None
    """Seconds the handling that succeeded took."""
    error: str | None = None
    dead_letter_topic: str | None = None
    compensated_by: str | None = None
    """Id of the event that undid this group's handling."""
    source: str | None = None
    """The CloudEvents source of the group's app."""


@dataclass
class Node:
    stored: Stored
    groups: list[GroupOutcome] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    compensated_by: list[Node] = field(default_factory=list)

    @property
    def event(self) -> Event:
        return self.stored.event

    @property
    def compensates(self) -> str | None:
        return compensated_id(self.stored.event)

    def walk(self) -> Iterable[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Flow:
    """The trees of a flow; ``matched``: whether the id asked for was a correlation id."""

    matched: Literal["correlationid", "id"]
    roots: list[Node]

    def nodes(self) -> list[Node]:
        return [node for root in self.roots for node in root.walk()]


def build(
    wanted: str,
    events: Sequence[Stored],
    dead_letters: Sequence[DeadLetter] = (),
    handlings: Sequence[Handling] = (),
    committed: Committed | None = None,
) -> Flow | None:
    """The flow of ``wanted`` (a correlation id, else an event id), or None if neither.

    ``committed``: the groups' positions, for the groups that left no record
    of an event (recording off, records expired): past it, or not yet.
    """
    first: dict[str, Stored] = {}
    positions: dict[str, list[Position]] = {}
    for stored in events:  # a redriven event is stored again: one node, every position
        first.setdefault(stored.event.id, stored)
        positions.setdefault(stored.event.id, []).append(stored.position)
    members = [s for s in first.values() if (s.event.correlationid or s.event.id) == wanted]
    matched: Literal["correlationid", "id"] = "correlationid"
    if not members:
        if wanted not in first:
            return None
        matched = "id"
        members = _descendants(first[wanted], first.values())
    nodes = {s.event.id: Node(s) for s in members}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.event.causationid or "")
        if parent is None or parent is node or node is nodes.get(wanted):
            roots.append(node)  # the flow starts here (its cause is not part of it)
        else:
            parent.children.append(node)
    for node in nodes.values():
        node.children.sort(key=_order)
    roots.sort(key=_order)
    _outcomes(nodes, positions, dead_letters, handlings)
    if committed:
        _positions(nodes, positions, committed)
    return Flow(matched, roots)


def _order(node: Node) -> tuple[float, str]:
    return (node.stored.published_at, node.event.id)


def _descendants(root: Stored, events: Iterable[Stored]) -> list[Stored]:
    caused: dict[str, list[Stored]] = {}
    for stored in events:
        if stored.event.causationid is not None:
            caused.setdefault(stored.event.causationid, []).append(stored)
    found: dict[str, Stored] = {root.event.id: root}
    todo = [root]
    while todo:
        for child in caused.get(todo.pop().event.id, ()):
            if child.event.id not in found:
                found[child.event.id] = child
                todo.append(child)
    return list(found.values())


def _outcomes(
    nodes: dict[str, Node],
    positions: dict[str, list[Position]],
    dead_letters: Sequence[DeadLetter],
    handlings: Sequence[Handling],
) -> None:
    owner = {p: node for event_id, node in nodes.items() for p in positions[event_id]}
    records: dict[str, dict[str, list[Handling]]] = {}
    for record in sorted(handlings, key=lambda r: (r.at, r.attempt)):
        node = owner.get(record.position)
        if node is not None:
            records.setdefault(node.event.id, {}).setdefault(record.group, []).append(record)
    letters: dict[str, dict[str, DeadLetter]] = {}
    for letter in dead_letters:
        node = owner.get((letter.origin_topic, letter.origin_partition, letter.origin_offset))
        if node is not None:
            letters.setdefault(node.event.id, {})[letter.origin_group] = letter
    for event_id, node in nodes.items():
        by_group = records.get(event_id, {})
        for group in sorted(by_group.keys() | letters.get(event_id, {}).keys()):
            node.groups.append(
                _summary(group, by_group.get(group, []), letters.get(event_id, {}).get(group))
            )
    for node in nodes.values():
        undone = nodes.get(node.compensates or "")
        if undone is not None:
            undone.compensated_by.append(node)
            _mark_compensated(undone, node)


def _positions(
    nodes: dict[str, Node], positions: dict[str, list[Position]], committed: Committed
) -> None:
    for event_id, node in nodes.items():
        known = {g.group for g in node.groups}
        for group, reads in sorted(committed.items()):
            if group in known:
                continue
            nexts = [
                (reads[(topic, partition)], offset)
                for topic, partition, offset in positions[event_id]
                if (topic, partition) in reads
            ]
            if nexts:
                past = any(next_offset > offset for next_offset, offset in nexts)
                node.groups.append(
                    GroupOutcome(group, None, "committed" if past else "pending", 0, 0)
                )


def _summary(group: str, records: list[Handling], letter: DeadLetter | None) -> GroupOutcome:
    retries = sum(1 for r in records if r.outcome == "retried")
    app = records[0].app if records else None
    source = records[0].source if records else None
    final = next((r for r in reversed(records) if r.outcome in ("handled", "dead_lettered")), None)
    if final is not None and final.outcome == "handled":
        started = final.started
        waited = None if started is None else max(started - final.published_at, 0.0)
        return GroupOutcome(
            group, app, "handled", final.attempt, retries, waited, final.seconds, source=source
        )
    if final is not None:
        return GroupOutcome(
            group,
            app,
            "dead_lettered",
            final.attempt,
            retries,
            error=final.error,
            dead_letter_topic=final.dead_letter_topic,
            source=source,
        )
    if letter is not None:  # no records (a broker without them, or records expired)
        error = f"{letter.error_type.rsplit('.', 1)[-1]}: {letter.error_message}"
        return GroupOutcome(
            group,
            app,
            "dead_lettered",
            letter.attempts,
            max(letter.attempts - 1, retries),
            error=error,
            dead_letter_topic=dead_letter_topic(letter.origin_topic),
        )
    last = records[-1].attempt if records else 0
    return GroupOutcome(group, app, "retrying", last, retries, source=source)


def _mark_compensated(undone: Node, compensation: Node) -> None:
    """Mark the handlings of ``undone`` that ``compensation`` undid.

    Those of a group whose app had an effect (it emitted a follow-up of
    ``undone``) and handled the compensation: in the shop, inventory reserved
    stock for an OrderPlaced and released it on ReleaseInventory, while
    analytics, which saw both, undid nothing.
    """
    apps = {g.app for g in compensation.groups if g.app is not None and g.outcome == "handled"}
    makers = {child.event.source for child in undone.children}
    for outcome in undone.groups:
        if outcome.outcome == "handled" and outcome.app in apps and outcome.source in makers:
            outcome.outcome = "compensated"
            outcome.compensated_by = compensation.event.id
