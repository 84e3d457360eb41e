"""What must hold after a run, checked against the event log (the truth) and the outbox.

:class:`Facts` folds stored events into what they say: orders placed (and
poison events that never validated), their outcomes, the stock rebuilt from
the inventory's events, the dead letters. :func:`check` compares them:

* every order ended confirmed and shipped, or cancelled (not both, not neither);
* stock is conserved: per SKU, units added = on hand + reserved + shipped,
  nothing is left reserved and nothing is oversold;
* each confirmed order got exactly one email, and no other order got one;
* money: every payment taken belongs to a confirmed order or was refunded
  (a payment that came after the saga's timeout cancelled its order), never
  both, and only payments taken were refunded;
* the dead-letter topic holds exactly the poison events, each once.

The same checks run in one process (``tidings demo``) and from outside a
multi-process shop (``python -m tidings.examples.shop.check``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tidings.examples.shop.eventlog import Record
from tidings.examples.shop.events import (
    CUSTOMER_EVENTS,
    INVENTORY_EVENTS,
    ORDER_DLQ,
    ORDER_EVENTS,
    SHIPPING_EVENTS,
    CustomerFlagged,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
    parse,
)
from tidings.examples.shop.stock import Stock

__all__ = ["Check", "Facts", "check"]

_SHOWN = 5


@dataclass
class Facts:
    """What the stored events say (feed them with :meth:`add`, in any order)."""

    orders: dict[str, OrderPlaced] = field(default_factory=dict)
    poison: set[str] = field(default_factory=set)
    """Ids of ``OrderPlaced`` events whose data does not validate."""
    confirmed: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    shipped: set[str] = field(default_factory=set)
    charged: set[str] = field(default_factory=set)
    """Orders whose payment was taken."""
    refunded: set[str] = field(default_factory=set)
    stock: Stock = field(default_factory=Stock)
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Event ids in the dead-letter topic, with how often each is there."""
    flagged: set[str] = field(default_factory=set)
    events: Counter[str] = field(default_factory=Counter)
    """Events stored per topic."""

    def add(self, records: Iterable[Record]) -> int:
        """Fold ``records`` in; return how many there were."""
        count = 0
        for record in records:
            count += 1
            self.events[record.topic] += 1
            event = record.event
            if record.topic == ORDER_DLQ:
                self.dead_letters[event.id if event is not None else "(undecodable)"] += 1
                continue
            if event is None:
                continue
            payload = parse(event)
            if record.topic == ORDER_EVENTS and event.type == "OrderPlaced" and payload is None:
                self.poison.add(event.id)
            elif isinstance(payload, OrderPlaced):
                self.orders.setdefault(payload.order_id, payload)
            elif isinstance(payload, OrderConfirmed):
                self.confirmed.add(payload.order_id)
            elif isinstance(payload, OrderCancelled):
                self.cancelled.add(payload.order_id)
            elif isinstance(payload, PaymentProcessed):
                self.charged.add(payload.order_id)
            elif isinstance(payload, PaymentRefunded):
                self.refunded.add(payload.order_id)
            elif isinstance(payload, OrderShipped) and record.topic == SHIPPING_EVENTS:
                self.shipped.add(payload.order_id)
            elif isinstance(payload, CustomerFlagged) and record.topic == CUSTOMER_EVENTS:
                self.flagged.add(payload.customer_id)
            elif payload is not None and record.topic == INVENTORY_EVENTS:
                self.stock.apply(payload)
        return count

    def open_orders(self) -> list[str]:
        """Orders with no final outcome yet."""
        return sorted(
            o
            for o in self.orders
            if o not in self.cancelled and not (o in self.confirmed and o in self.shipped)
        )


@dataclass(frozen=True)
class Check:
    label: str
    ok: bool
    detail: str = ""


def _some(items: Iterable[str]) -> str:
    listed = sorted(items)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return ", ".join(listed[:_SHOWN]) + more


def _outcomes(facts: Facts) -> Check:
    both = facts.confirmed & facts.cancelled
    unshipped = (facts.confirmed - facts.cancelled) - facts.shipped
    shipped_cancelled = facts.shipped & facts.cancelled
    neither = set(facts.orders) - facts.confirmed - facts.cancelled
    strangers = (facts.confirmed | facts.cancelled | facts.shipped) - set(facts.orders)
    problems = [
        f"confirmed and cancelled: {_some(both)}" if both else "",
        f"confirmed, never shipped: {_some(unshipped)}" if unshipped else "",
        f"shipped, yet cancelled: {_some(shipped_cancelled)}" if shipped_cancelled else "",
        f"no outcome: {_some(neither)}" if neither else "",
        f"outcome of an order never placed: {_some(strangers)}" if strangers else "",
    ]
    detail = "; ".join(p for p in problems if p)
    return Check(
        f"every order ended confirmed and shipped, or cancelled ({len(facts.orders)} orders)",
        not detail,
        detail,
    )


def _stock(facts: Facts) -> Check:
    stock = facts.stock
    problems = []
    for sku, (added, on_hand, reserved, shipped) in stock.levels().items():
        if added != on_hand + reserved + shipped:
            problems.append(f"{sku}: added {added} != {on_hand} + {reserved} + {shipped}")
        if reserved:
            problems.append(f"{sku}: {reserved} left reserved")
        if on_hand < 0:
            problems.append(f"{sku}: oversold, {on_hand} on hand")
    status = {o: r.status for o, r in stock.orders.items()}
    wrong_ship = {o for o in facts.shipped if status.get(o) != "shipped"}
    wrong_release = {o for o in facts.cancelled if status.get(o) not in ("released", "rejected")}
    if wrong_ship:
        problems.append(f"shipped without stock leaving: {_some(wrong_ship)}")
    if wrong_release:
        problems.append(f"cancelled, stock still held: {_some(wrong_release)}")
    if not stock.added:
        problems.append("no stock was ever added")
    return Check(
        "stock conserved: added = on hand + reserved + shipped, nothing left reserved",
        not problems,
        "; ".join(problems),
    )


def _emails(facts: Facts, emails: Counter[str]) -> Check:
    twice = {o for o, n in emails.items() if n > 1}
    missing = facts.confirmed - set(emails)
    unexpected = set(emails) - facts.confirmed
    problems = [
        f"sent more than once: {_some(twice)}" if twice else "",
        f"never sent: {_some(missing)}" if missing else "",
        f"sent for an unconfirmed order: {_some(unexpected)}" if unexpected else "",
    ]
    detail = "; ".join(p for p in problems if p)
    return Check(
        f"one email per confirmed order ({sum(emails.values())} sent, "
        f"{len(facts.confirmed)} confirmed)",
        not detail,
        detail,
    )


def _named(problem: str, orders: set[str]) -> str:
    return f"{problem}: {_some(orders)}" if orders else ""


def _payments(facts: Facts) -> Check:
    charged, confirmed, refunded = facts.charged, facts.confirmed, facts.refunded
    problems = [
        _named("paid, neither confirmed nor refunded", charged - refunded - confirmed),
        _named("confirmed, never paid", confirmed - charged),
        _named("confirmed and refunded", confirmed & refunded),
        _named("refunded, never paid", refunded - charged),
        _named("refunded, not cancelled", refunded - facts.cancelled),
    ]
    return Check(
        f"every payment taken is for a confirmed order or refunded ({len(charged)} "
        f"taken, {len(refunded)} refunded)",
        not any(problems),
        "; ".join(p for p in problems if p),
    )


def _dead_letters(facts: Facts) -> Check:
    letters = set(facts.dead_letters)
    twice = {e for e, n in facts.dead_letters.items() if n > 1}
    problems = [
        f"not dead-lettered: {_some(facts.poison - letters)}" if facts.poison - letters else "",
        f"dead-lettered, not poison: {_some(letters - facts.poison)}"
        if letters - facts.poison
        else "",
        f"dead-lettered twice: {_some(twice)}" if twice else "",
    ]
    detail = "; ".join(p for p in problems if p)
    return Check(
        f"the DLQ holds exactly the poison events ({len(facts.poison)} poison, "
        f"{sum(facts.dead_letters.values())} dead letters)",
        not detail,
        detail,
    )


def check(facts: Facts, emails: Counter[str]) -> list[Check]:
    """Every invariant, given the facts of the log and the emails of the outbox."""
    return [
        _outcomes(facts),
        _stock(facts),
        _emails(facts, emails),
        _payments(facts),
        _dead_letters(facts),
    ]
