"""The causal tree of a flow: stored events joined with what each group did with them.

:func:`build` is pure: given the stored events, the dead letters and the
handling records, it finds the events of a flow (one correlation id, or one
event and what it caused) and sums up each consumer group's attempts per
event. :func:`read_flow` gathers those from an inspectable broker (every
retained topic, never joining a group) and :func:`flow_document` is the flow
as JSON: what ``tidings trace --json`` prints and the gateway's ``/trace``
answers. Printing the tree as text is ``tidings trace``'s part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from tidings._times import format_time
from tidings.codec import Codec
from tidings.compensation import compensated_id
from tidings.deadletter import DLQ_SUFFIX, DeadLetter, dead_letter_topic
from tidings.errors import DecodeError
from tidings.event import Event
from tidings.inspection import Inspectable, StoredMessage
from tidings.outcomes import HANDLINGS_TOPIC, Handling, decode_handlings, is_internal_topic
from tidings.positions import stored as stored_messages

__all__ = ["Flow", "GroupOutcome", "Node", "Stored", "build", "flow_document", "read_flow"]

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


# -- reading a broker ------------------------------------------------------------------


async def read_flow(broker: Inspectable, wanted: str) -> Flow | None:
    """The flow of ``wanted`` as ``broker`` stores it (None if no event has that id).

    Reads every retained topic through, so it costs what they hold: an
    operator's look, not a request path to call per event.
    """
    found = _Found()
    for info in await broker.list_topics():
        if info.name == HANDLINGS_TOPIC or not is_internal_topic(info.name):
            async for message in stored_messages(broker, info.name, info.partitions):
                found.take(message)
    committed = {
        group.name: {(p.topic, p.partition): p.committed for p in group.partitions}
        for group in await broker.list_groups()
    }
    return build(wanted, found.events, found.letters, found.handlings, committed)


@dataclass
class _Found:
    """What the retained topics hold: events, dead letters, handling records."""

    events: list[Stored] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    handlings: list[Handling] = field(default_factory=list)
    codec: Codec = field(default_factory=Codec)

    def take(self, message: StoredMessage) -> None:
        try:  # what is not what its topic should hold (poison) has no place in a flow
            if message.topic == HANDLINGS_TOPIC:
                self.handlings += decode_handlings(message.message)
            elif message.topic.endswith(DLQ_SUFFIX):
                self.letters.append(DeadLetter.from_message(message.message))
            else:
                event = self.codec.decode(message.message.value, message.message.headers)
                self.events.append(
                    Stored(
                        event,
                        message.topic,
                        message.partition,
                        message.offset,
                        message.published_at,
                    )
                )
        except DecodeError:
            pass


# -- JSON ------------------------------------------------------------------------------


def flow_document(wanted: str, flow: Flow) -> dict[str, Any]:
    """The flow as one JSON object: its trees, each event with its groups' outcomes."""
    nodes = flow.nodes()
    return {
        "id": wanted,
        "matched": flow.matched,
        "events": len(nodes),
        "types": sorted({node.event.type for node in nodes}),
        "roots": [_node(root) for root in flow.roots],
    }


def _node(node: Node) -> dict[str, Any]:
    event, where = node.event, node.stored
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "topic": where.topic,
        "partition": where.partition,
        "offset": where.offset,
        "time": format_time(event.time),
        "stored_at": format_time(where.published_at),
        "correlationid": event.correlationid,
        "causationid": event.causationid,
        "compensates": node.compensates,
        "compensated_by": [c.event.id for c in node.compensated_by],
        "handlings": [_outcome(o) for o in node.groups],
        "children": [_node(child) for child in node.children],
    }


def _outcome(outcome: GroupOutcome) -> dict[str, Any]:
    return {
        "group": outcome.group,
        "app": outcome.app,
        "outcome": outcome.outcome,
        "attempts": outcome.attempts,
        "retries": outcome.retries,
        "waited_seconds": outcome.waited,
        "handling_seconds": outcome.took,
        "error": outcome.error,
        "dead_letter_topic": outcome.dead_letter_topic,
        "compensated_by": outcome.compensated_by,
    }
