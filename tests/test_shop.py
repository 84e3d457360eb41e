"""The e-commerce shop in one process: invariants, dead letters, emails, fraud, redelivery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from tidings import App, Context, Event, Outgoing
from tidings.broker import Broker
from tidings.brokers import from_url
from tidings.examples.shop import inventory as inventory_module
from tidings.examples.shop.catalogue import price_of
from tidings.examples.shop.config import ShopConfig, outbox_for
from tidings.examples.shop.eventlog import EventLog, Record
from tidings.examples.shop.events import (
    INVENTORY_EVENTS,
    ORDER_DLQ,
    InventoryReserved,
    LineItem,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    StockAdded,
    StockShipped,
    parse,
)
from tidings.examples.shop.invariants import Facts, check
from tidings.examples.shop.inventory import Inventory
from tidings.examples.shop.mailer import Outbox
from tidings.examples.shop.orders import SUSPICIOUS_CUSTOMER
from tidings.examples.shop.system import Shop, holds_shop_events
from tidings.middleware import Handle, PublishFn

SETTLE = 30.0


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


def _ok(checks: list[object]) -> None:
    failed = [c for c in checks if not getattr(c, "ok", False)]
    assert not failed, failed


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_the_whole_shop_keeps_its_invariants(
    backend: str, tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    url = _sqlite(tmp_path) if backend == "sqlite" else memory_url()
    async with Shop(url, outbox=tmp_path / "outbox.jsonl") as shop:
        assert await shop.place(100, rate=0) == 100
        verdict = await shop.settle(SETTLE)
    _ok(verdict.checks)
    assert verdict.ok
    facts = verdict.facts
    assert len(facts.orders) == 100
    assert len(facts.confirmed) + len(facts.cancelled) == 100
    assert facts.confirmed and facts.cancelled  # with a 10% decline rate, both happen
    # The DLQ holds exactly the poison events, each once, and their failure says why.
    assert len(facts.poison) == shop.generator.poison == 2
    assert set(facts.dead_letters) == facts.poison
    assert set(facts.dead_letters.values()) == {1}
    # One email per confirmed order, in the outbox file.
    emails = Outbox.read(tmp_path / "outbox.jsonl")
    assert set(emails) == facts.confirmed
    assert set(emails.values()) == {1}
    # The payments that timed out once were retried, and nothing else failed.
    stats = {name: s for app in shop.apps for name, s in app.stats().items()}
    assert stats["payment.charge"].retried == shop.payment.timeouts > 0
    assert stats["inventory.reserve"].dead_lettered == 2
    assert sum(s.dead_lettered for s in stats.values()) == 2
    # The order that bought the suspicious customer's fifth order: flagged.
    assert SUSPICIOUS_CUSTOMER in facts.flagged


async def test_dead_letters_carry_the_validation_error(
    memory_url: Callable[[], str], tmp_path: Path
) -> None:
    async with Shop(memory_url(), outbox=tmp_path / "outbox.jsonl") as shop:
        await shop.place(10, rate=0)
        verdict = await shop.settle(SETTLE)
        records = await EventLog(shop.broker, [ORDER_DLQ]).read_all()
    assert verdict.ok, verdict.checks
    assert len(records) == 1 == len(verdict.facts.poison)
    letter = records[0].dead_letter
    assert letter is not None
    assert letter.error_type == "tidings.errors.SchemaError"
    assert letter.attempts == 1
    assert letter.subscription == "inventory.reserve"
    assert records[0].event is not None and records[0].event.type == "OrderPlaced"


async def test_fraud_detection_joins_late_and_flags_crafted_customers(
    memory_url: Callable[[], str], tmp_path: Path
) -> None:
    config = ShopConfig(fail_rate=0.0, transient_rate=0.0)
    async with Shop(memory_url(), config=config, outbox=tmp_path / "outbox.jsonl") as shop:
        # Published before fraud detection exists: it has to catch up on them.
        crafted = [_order(f"ORD-CRAFT-{n}", "C-BURST", [("STICKERS", 1)]) for n in range(5)] + [
            _order("ORD-BIG", "C-BIG", [("KB-MECH", 3), ("LAMP-LTD", 3)])
        ]
        for order in crafted:
            await shop.orders.app.publish(order, key=order.order_id)
        await shop.place(30, rate=0)
        verdict = await shop.settle(SETTLE)
    assert verdict.ok, verdict.checks
    assert shop.fraud.flagged["C-BURST"] == "4 orders within 30s"
    assert shop.fraud.flagged["C-BIG"].startswith("a single order of 654.00 EUR")
    assert {"C-BURST", "C-BIG"} <= verdict.facts.flagged
    assert "C-0001" not in verdict.facts.flagged


def _order(order_id: str, customer: str, items: list[tuple[str, int]]) -> OrderPlaced:
    lines = [LineItem(sku=sku, quantity=q) for sku, q in items]
    return OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        items=lines,
        total=round(sum(price_of(i.sku) * i.quantity for i in lines), 2),
        placed_at=datetime.now(UTC),
    )


def _picked(order_id: str, every: int) -> bool:
    return zlib.crc32(order_id.encode()) % every == 0


def _fail_once_after(
    kinds: set[str], every: int, failed: Counter[str]
) -> Callable[[Handle], Handle]:
    """Handler middleware: the handler runs (its side effect happens), then attempt 1 fails."""

    def middleware(next_handle: Handle) -> Handle:
        async def handle(ctx: Context) -> list[Event]:
            follow_ups = await next_handle(ctx)
            order_id = str((ctx.event.data or {}).get("order_id", ""))
            if ctx.event.type in kinds and ctx.attempt == 1 and _picked(order_id, every):
                failed[ctx.event.type] += 1
                raise ConnectionResetError("lost the connection before the ack")
            return follow_ups

        return handle

    return middleware


def _crash_after_publishing(every: int, failed: Counter[str]) -> Callable[[PublishFn], PublishFn]:
    """Publish middleware: the follow-ups are stored, then the handling fails (no ack)."""
    seen: set[str] = set()

    def middleware(next_publish: PublishFn) -> PublishFn:
        async def publish(outgoing: Outgoing) -> None:
            await next_publish(outgoing)
            for event in outgoing.events:
                order_id = getattr(event.data, "order_id", "")
                if (
                    isinstance(event.data, InventoryReserved)
                    and _picked(order_id, every)
                    and order_id not in seen
                ):
                    seen.add(order_id)
                    failed["published twice"] += 1
                    raise ConnectionResetError("crashed between publishing and the ack")

        return publish

    return middleware


async def test_redelivery_never_sends_an_email_twice(tmp_path: Path) -> None:
    """Handlers fail after their effect, a follow-up is stored twice, the mailer restarts."""
    failed: Counter[str] = Counter()
    shop = Shop(_sqlite(tmp_path), outbox=tmp_path / "outbox.jsonl")
    shop.mailer.app.add_middleware(_fail_once_after({"OrderConfirmed"}, 3, failed))
    shop.inventory.app.add_middleware(_fail_once_after({"OrderPlaced"}, 5, failed))
    shop.inventory.app.add_publish_middleware(_crash_after_publishing(7, failed))
    first_mailer = shop.mailer
    async with shop:
        await shop.place(40, rate=0)
        async with asyncio.timeout(SETTLE):
            while failed["OrderConfirmed"] < 2:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.01)
        await shop.restart("mailer")  # a new mailer: it knows what was sent from the outbox
        await shop.place(40, rate=0)
        verdict = await shop.settle(SETTLE)
    _ok(verdict.checks)
    assert failed["OrderConfirmed"] and failed["OrderPlaced"] and failed["published twice"]
    facts = verdict.facts
    emails = Outbox.read(tmp_path / "outbox.jsonl")
    assert set(emails) == facts.confirmed and set(emails.values()) == {1}
    assert first_mailer.duplicates + shop.mailer.duplicates >= failed["OrderConfirmed"]
    # The inventory answered some orders twice; it still reserved once per order.
    log = await _inventory_log(_sqlite(tmp_path))
    reserved = Counter(p.order_id for p in log if isinstance(p, InventoryReserved))
    assert max(reserved.values()) == 2
    assert verdict.facts.stock.levels() == shop.inventory.stock.levels()


async def _inventory_log(url: str) -> list[object]:
    broker = from_url(url)
    await broker.connect()
    try:
        records = await EventLog(broker, [INVENTORY_EVENTS]).read_all()
    finally:
        await broker.close()
    return [parse(r.event) for r in records if r.event is not None]


async def test_inventory_rebuilds_its_stock_and_stocks_the_shelves_once(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    async with Shop(url, outbox=tmp_path / "outbox.jsonl") as shop:
        await shop.place(30, rate=0)
        await shop.settle(SETTLE)
    levels = shop.inventory.stock.levels()
    broker = from_url(url)
    rebuilt = Inventory(broker)
    await broker.connect()
    try:
        await rebuilt.app.start()
        await rebuilt.load()
        await rebuilt.app.stop()
    finally:
        await broker.close()
    assert rebuilt.stock.levels() == levels
    added = [p for p in await _inventory_log(url) if isinstance(p, StockAdded)]
    assert len({a.batch for a in added}) == len(added)  # initial stock published once


def _broken_facts() -> Facts:
    facts = Facts()
    placed = [_order(f"ORD-{n}", "C-1", [("MUG-EVT", 1)]) for n in range(4)]
    for order in placed:
        facts.orders[order.order_id] = order
    facts.stock.apply(StockAdded(sku="MUG-EVT", quantity=10, batch="initial:MUG-EVT"))
    for order in placed[:2]:
        facts.stock.apply(
            InventoryReserved(
                order_id=order.order_id,
                customer_id=order.customer_id,
                items=order.items,
                total=order.total,
            )
        )
    facts.confirmed = {"ORD-0", "ORD-1"}
    facts.shipped = {"ORD-0"}  # ORD-1 never shipped; ORD-2 and ORD-3 have no outcome
    facts.poison = {"poison-1"}
    facts.dead_letters = Counter({"poison-1": 2, "not-poison": 1})
    return facts


def test_the_checks_fail_on_a_broken_shop() -> None:
    emails = Counter({"ORD-0": 2, "ORD-3": 1})
    checks = check(_broken_facts(), emails)
    assert not any(c.ok for c in checks)
    outcomes, stock, mail, money, dead = (c.detail for c in checks)
    assert "confirmed, never paid: ORD-0, ORD-1" in money
    assert "confirmed, never shipped: ORD-1" in outcomes
    assert "no outcome: ORD-2, ORD-3" in outcomes
    assert "MUG-EVT: 2 left reserved" in stock
    assert "shipped without stock leaving: ORD-0" in stock
    assert "sent more than once: ORD-0" in mail
    assert "never sent: ORD-1" in mail
    assert "sent for an unconfirmed order: ORD-3" in mail
    assert "dead-lettered, not poison: not-poison" in dead
    assert "dead-lettered twice: poison-1" in dead


def _record(topic: str, payload: BaseModel) -> Record:
    return Record(topic, Event(type=type(payload).__name__, source="/test", data=payload))


def test_the_checks_pass_on_a_consistent_shop() -> None:
    facts = Facts()
    order = _order("ORD-1", "C-1", [("MUG-EVT", 2)])
    reserved = InventoryReserved(
        order_id="ORD-1", customer_id="C-1", items=order.items, total=order.total
    )
    facts.add(
        [
            _record("order.events", order),
            _record("inventory.events", StockAdded(sku="MUG-EVT", quantity=5, batch="initial:1")),
            _record("inventory.events", reserved),
            _record("inventory.events", reserved),  # a duplicate changes nothing
            _record(
                "payment.events", PaymentProcessed(order_id="ORD-1", customer_id="C-1", amount=25)
            ),
            _record("order.events", OrderConfirmed(order_id="ORD-1", customer_id="C-1", total=25)),
        ]
    )
    outcome, *_ = check(facts, Counter({"ORD-1": 1}))
    assert not outcome.ok and "confirmed, never shipped: ORD-1" in outcome.detail
    facts.add(
        [
            _record("shipping.events", OrderShipped(order_id="ORD-1", carrier="DHL", tracking="T")),
            _record("inventory.events", StockShipped(order_id="ORD-1", items=order.items)),
        ]
    )
    _ok(check(facts, Counter({"ORD-1": 1})))
    assert facts.stock.levels() == {"MUG-EVT": (5, 3, 0, 2)}


async def test_a_broker_with_shop_events_is_recognised(
    tmp_path: Path, memory_url: Callable[[], str]
) -> None:
    for url in (_sqlite(tmp_path), memory_url()):
        broker: Broker = from_url(url)
        await broker.connect()
        try:
            assert not await holds_shop_events(broker)
            app = App("probe", broker=broker)
            await app.publish({"x": 1}, topic="order.events", type="Probe")
            assert await holds_shop_events(broker)
        finally:
            await broker.close()


def test_each_service_module_offers_an_app_built_on_first_use() -> None:
    code = (
        "import tidings.examples.shop.inventory as m, sys; "
        "assert 'app' not in vars(m); a = m.app; assert a is m.app; "
        "print(a.name, a.broker_url)"
    )
    env = {**os.environ, "TIDINGS_BROKER": "memory://standalone"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "inventory memory://standalone"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = inventory_module.nope


def test_the_outbox_sits_next_to_the_database() -> None:
    assert outbox_for("sqlite:///./data/shop.db") == Path("data/shop-outbox.jsonl")
    assert outbox_for("sqlite:////var/lib/shop.db") == Path("/var/lib/shop-outbox.jsonl")
    assert outbox_for("memory://") == Path("shop-outbox.jsonl")


def test_the_outbox_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text('{"order_id": "ORD-1"}\n{"order_id": "ORD-2", "to": "x@exa')
    outbox = Outbox(path)
    assert outbox.sent == {"ORD-1"}
    assert not outbox.send({"order_id": "ORD-1"})
    assert outbox.send({"order_id": "ORD-2"})
    assert Outbox.read(path) == Counter({"ORD-1": 1, "ORD-2": 1})


def test_demo_runs_through_the_cli_and_prints_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_BROKER"}
    env["NO_COLOR"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings.cli",
            "demo",
            "--orders",
            "60",
            "--rate",
            "0",
            "--headless",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "orders: 60 placed" in out
    assert "ok    the DLQ holds exactly the poison events (2 poison, 2 dead letters)" in out
    assert "ok    one email per confirmed order" in out
    assert "done in" in out and "every invariant holds" in out
    assert "FAIL" not in out
    assert (tmp_path / "tidings-demo.db").exists()
    assert (tmp_path / "tidings-demo-outbox.jsonl").exists()
