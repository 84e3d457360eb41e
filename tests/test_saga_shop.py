"""The shop's order saga on tidings.sagas: a payment that stalls past the timeout
cancels its order, releases its stock, and is refunded when it comes after all."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings import Outgoing
from tidings.compensation import compensated_id
from tidings.examples.shop.config import ShopConfig, sagas_for
from tidings.examples.shop.eventlog import EventLog
from tidings.examples.shop.events import (
    ALL_TOPICS,
    PAYMENT_COMMANDS,
    OrderCancelled,
    OrderPlaced,
    parse,
)
from tidings.examples.shop.invariants import Check, Facts, check
from tidings.examples.shop.system import Shop
from tidings.middleware import PublishFn, PublishMiddleware

SETTLE = 30.0


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_stalled_payment_times_out_cancels_the_order_and_is_refunded(
    backend: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}" if backend == "sqlite" else memory_url()
    config = ShopConfig(stall_rate=0.15, stall=1.5, payment_timeout=0.5)
    async with Shop(url, config=config, outbox=tmp_path / "outbox.jsonl") as shop:
        assert await shop.place(40, rate=0) == 40
        verdict = await shop.settle(SETTLE)
        records = await EventLog(shop.broker, ALL_TOPICS).read_all()
        payment = shop.payment
        orders = set(verdict.facts.orders)
        stalled = {o for o in orders if payment.stalls(o) and not payment.times_out_first(o)}
        placed_ids = {
            p.order_id: r.event.id
            for r in records
            if r.event is not None and isinstance(p := parse(r.event), OrderPlaced)
        }
        # A saga instance is keyed by the correlation id: its order's OrderPlaced.
        snapshots = {o: await shop.saga.runner.get(placed_ids[o]) for o in stalled}
    failed = [c for c in verdict.checks if not c.ok]
    assert not failed, failed
    assert verdict.ok
    facts = verdict.facts
    assert stalled and payment.stalled == len(stalled)
    # Every stalled payment came too late: its order was cancelled, its stock released...
    assert stalled <= facts.cancelled
    assert all(facts.stock.status_of(o) == "released" for o in stalled)
    reasons = {
        p.order_id: p.reason
        for r in records
        if r.event is not None and isinstance(p := parse(r.event), OrderCancelled)
    }
    assert all(reasons[o].startswith("no payment within 0.5s") for o in stalled)
    # ...and the money taken late went back; a late refusal took none.
    assert facts.refunded == {o for o in stalled if not payment.declines(o)}
    assert facts.refunded  # with 15% stalled and 10% declined, some are paid late
    assert not facts.refunded & facts.confirmed
    # The release says what it undoes: the order's OrderPlaced (the flow's root).
    releases = [
        r.event for r in records if r.event is not None and r.event.type == "ReleaseInventory"
    ]
    undone = {compensated_id(e) for e in releases}
    assert {placed_ids[o] for o in stalled} <= undone
    # Each stalled order's saga completed once both the release and the payment were known.
    for order_id, snapshot in snapshots.items():
        assert snapshot is not None and snapshot.completed, order_id
        assert snapshot.state.status == "cancelled"
        assert snapshot.state.payment == ("failed" if payment.declines(order_id) else "refunded")


def _fail_sending(types: set[str], every: int, failed: Counter[str]) -> PublishMiddleware:
    """Publish middleware: every ``every``-th event of ``types`` fails to be sent once
    (after the saga saved the step that produced it)."""
    seen: Counter[str] = Counter()

    def middleware(next_publish: PublishFn) -> PublishFn:
        async def publish(outgoing: Outgoing) -> None:
            for event in outgoing.events:
                if event.type in types and event.id not in seen:
                    seen[event.id] += 1
                    if len(seen) % every == 0:
                        failed[event.type] += 1
                        raise ConnectionError(f"lost {event.type} {event.id} on its way")
            await next_publish(outgoing)

        return publish

    return middleware


async def test_a_saga_that_fails_to_send_or_restarts_sends_the_same_commands(
    tmp_path: Path,
) -> None:
    failed: Counter[str] = Counter()
    shop = Shop(f"sqlite:///{tmp_path / 'shop.db'}", outbox=tmp_path / "outbox.jsonl")
    shop.saga.app.add_publish_middleware(_fail_sending({"PaymentRequested"}, 4, failed))
    async with shop:
        await shop.place(30, rate=0)
        async with asyncio.timeout(SETTLE):
            while failed["PaymentRequested"] < 2:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.01)
        await shop.restart("saga")  # a new saga service: its instances are in the file
        await shop.place(30, rate=0)
        verdict = await shop.settle(SETTLE)
        records = await EventLog(shop.broker, [PAYMENT_COMMANDS]).read_all()
    failed_checks = [c for c in verdict.checks if not c.ok]
    assert not failed_checks, failed_checks
    assert verdict.ok and len(verdict.facts.orders) == 60
    # Each order was asked to pay by one PaymentRequested: sent again after a failed
    # send, it kept its id (the inventory's repeated answers were ignored as duplicates).
    requests: dict[str, set[str]] = {}
    for record in records:
        if record.event is not None and record.event.type == "PaymentRequested":
            requests.setdefault(record.event.data["order_id"], set()).add(record.event.id)
    assert {len(ids) for ids in requests.values()} == {1}
    assert (tmp_path / "shop-sagas.db").exists()


def _money(facts: Facts) -> Check:
    return next(c for c in check(facts, Counter()) if c.label.startswith("every payment"))


def test_the_invariants_catch_a_late_payment_never_refunded() -> None:
    facts = Facts()
    facts.cancelled.add("o1")
    facts.charged.add("o1")
    assert not _money(facts).ok
    assert "paid, neither confirmed nor refunded: o1" in _money(facts).detail
    facts.refunded.add("o1")
    assert _money(facts).ok
    facts.confirmed.add("o1")
    assert "confirmed and refunded: o1" in _money(facts).detail
    facts.refunded.add("o2")
    assert "refunded, never paid: o2" in _money(facts).detail


def test_the_saga_state_sits_next_to_the_embedded_broker() -> None:
    assert sagas_for("sqlite:///./data/shop.db") == "sqlite:///data/shop-sagas.db"
    assert sagas_for("sqlite:////tmp/x/shop.db?partitions=4") == "sqlite:////tmp/x/shop-sagas.db"
    assert sagas_for("memory://shop") is None
    assert sagas_for(None) is None
    assert sagas_for("kafka://localhost:9092") == "sqlite:///shop-sagas.db"
    with pytest.raises(ValueError, match="payment_timeout"):
        ShopConfig(payment_timeout=0)
