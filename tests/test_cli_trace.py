"""``tidings trace``: a flow's tree from a real database, printed by a real CLI process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tidings
from tidings import App, Context, Event, RetryPolicy
from tidings.compensation import compensating
from tidings.testing.semantics import eventually

TIMEOUT = 60.0
ONCE_MORE = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02)


def _tidings(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_BROKER", "FORCE_COLOR")}
    env["NO_COLOR"] = "1"
    # The tidings under test, wherever the working directory is.
    source = str(Path(tidings.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (source, env.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _trace(wanted: str, db: str, cwd: Path) -> tuple[list[str], dict[str, Any]]:
    text = _tidings("trace", wanted, "--broker", db, cwd=cwd)
    assert text.returncode == 0, text.stderr
    document = _tidings("trace", wanted, "--json", "--broker", db, cwd=cwd)
    assert document.returncode == 0, document.stderr
    return text.stdout.splitlines(), json.loads(document.stdout)


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


_TIMINGS = r"waited [\d.]+ (µs|ms|s), took [\d.]+ (µs|ms|s)"


def _normal(lines: list[str], names: dict[str, str]) -> list[str]:
    """The tree's lines with ids as names, and times, positions and durations blanked."""
    out = []
    for line in lines:
        for event_id, name in names.items():
            line = line.replace(event_id, name)
        line = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<time>", line)
        line = re.sub(r" \d+/\d+ ", " <p>/<o> ", line)
        line = re.sub(_TIMINGS, "waited <t>, took <t>", line)
        out.append(line.rstrip())
    return out


# -- a small flow: a retry, a dead letter, a compensation ---------------------------------


@dataclass
class OrderPlaced:
    order_id: str


@dataclass
class Reserved:
    order_id: str


@dataclass
class Released:
    order_id: str


@dataclass
class ChargeFailed:
    order_id: str


@dataclass
class ReleaseStock:
    order_id: str


def _flow(url: str) -> tuple[list[App], App, asyncio.Event]:
    shop = App("shop", broker=url)
    shop.route(OrderPlaced, "orders")
    stock = App("stock", broker=url)
    stock.route(Reserved, "stock")
    stock.route(Released, "stock")
    billing = App("billing", broker=url)
    billing.route(ChargeFailed, "billing")
    saga = App("saga", broker=url)
    saga.route(ReleaseStock, "commands")
    mail = App("mail", broker=url)
    released = asyncio.Event()
    tries: dict[str, int] = {}

    @stock.subscribe("orders", retry=ONCE_MORE)
    async def reserve(order: OrderPlaced) -> Reserved:
        tries[order.order_id] = tries.get(order.order_id, 0) + 1
        if tries[order.order_id] == 1:
            raise TimeoutError("warehouse busy")
        return Reserved(order.order_id)

    @stock.subscribe("commands")
    async def release(command: ReleaseStock) -> Released:
        released.set()
        return Released(command.order_id)

    @billing.subscribe("stock")
    async def charge(event: Event) -> ChargeFailed | None:
        return ChargeFailed(event.data["order_id"]) if event.type == "Reserved" else None

    @saga.subscribe("billing")
    async def undo(failed: ChargeFailed, ctx: Context) -> None:
        root = ctx.event.correlationid or ctx.event.id
        ctx.emit(ReleaseStock(failed.order_id), extensions=compensating(root))

    @mail.subscribe("billing", retry=ONCE_MORE)
    async def notify(failed: ChargeFailed) -> None:
        raise ValueError("smtp down")

    return [stock, billing, saga, mail], shop, released


async def _run_flow(url: str) -> Event:
    services, shop, released = _flow(url)
    for app in services:
        await app.start()
    try:
        placed = await shop.publish(OrderPlaced("ORD-1"))
        await asyncio.wait_for(released.wait(), TIMEOUT)
        mail = services[-1].stats()["mail.notify"]
        await eventually(lambda: mail.dead_lettered == 1, TIMEOUT, "the dead letter")
        billing = services[1].stats()["billing.charge"]
        await eventually(lambda: billing.handled == 2, TIMEOUT, "Released at billing")
    finally:
        for app in services:
            await app.stop()
        await shop.stop()
    return placed


def test_trace_prints_the_flow_with_retries_dead_letters_and_compensation(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flow.db'}"
    placed = asyncio.run(_run_flow(db))

    lines, document = _trace(placed.id, db, tmp_path)

    [root] = document["roots"]
    nodes = {n["type"]: n for n in _nodes(root)}
    names = {n["id"]: f"<{n['type']}>" for n in nodes.values()}
    assert _normal(lines, names) == [
        "OrderPlaced  /shop  orders <p>/<o>  <time>  id <OrderPlaced>  "
        "compensated by ReleaseStock <ReleaseStock>",
        "  stock.reserve: retried 1 time, then compensated; waited <t>, took <t>",
        "└── Reserved  /stock  stock <p>/<o>  <time>  id <Reserved>",
        "      billing.charge: handled; waited <t>, took <t>",
        "    └── ChargeFailed  /billing  billing <p>/<o>  <time>  id <ChargeFailed>",
        "          mail.notify: retried 1 time, then dead-lettered to billing.dlq after 2 "
        "attempts: ValueError('smtp down')",
        "          saga.undo: handled; waited <t>, took <t>",
        "        └── ReleaseStock  /saga  commands <p>/<o>  <time>  id <ReleaseStock>  "
        "compensates <OrderPlaced>",
        "              stock.release: handled; waited <t>, took <t>",
        "            └── Released  /stock  stock <p>/<o>  <time>  id <Released>",
        "                  billing.charge: handled; waited <t>, took <t>",
    ]

    assert document["id"] == placed.id
    assert document["matched"] == "correlationid"
    assert document["events"] == 5
    assert document["types"] == [
        "ChargeFailed",
        "OrderPlaced",
        "ReleaseStock",
        "Released",
        "Reserved",
    ]
    assert root["id"] == placed.id
    parents = {n["type"]: n["causationid"] for n in nodes.values()}
    assert parents == {
        "OrderPlaced": None,
        "Reserved": placed.id,
        "ChargeFailed": nodes["Reserved"]["id"],
        "ReleaseStock": nodes["ChargeFailed"]["id"],
        "Released": nodes["ReleaseStock"]["id"],
    }
    [reserve] = root["handlings"]
    assert reserve | {"waited_seconds": None, "handling_seconds": None} == {
        "group": "stock.reserve",
        "app": "stock",
        "outcome": "compensated",
        "attempts": 2,
        "retries": 1,
        "waited_seconds": None,
        "handling_seconds": None,
        "error": None,
        "dead_letter_topic": None,
        "compensated_by": nodes["ReleaseStock"]["id"],
    }
    assert reserve["waited_seconds"] >= 0 and reserve["handling_seconds"] >= 0
    assert root["compensated_by"] == [nodes["ReleaseStock"]["id"]]
    assert nodes["ReleaseStock"]["compensates"] == placed.id
    mail = next(h for h in nodes["ChargeFailed"]["handlings"] if h["group"] == "mail.notify")
    assert (mail["outcome"], mail["attempts"], mail["retries"], mail["dead_letter_topic"]) == (
        "dead_lettered",
        2,
        1,
        "billing.dlq",
    )
    assert mail["error"] == "ValueError('smtp down')"

    # An event id inside the flow: that event and what it caused, nothing above it.
    lines, below = _trace(nodes["ChargeFailed"]["id"], db, tmp_path)
    assert below["matched"] == "id"
    assert [n["type"] for n in _nodes(below["roots"][0])] == [
        "ChargeFailed",
        "ReleaseStock",
        "Released",
    ]
    assert lines[0].startswith("ChargeFailed  /billing  billing ")


def test_trace_of_an_unknown_id_fails(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flow.db'}"
    asyncio.run(_run_flow(db))
    result = _tidings("trace", "nope", "--broker", db, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no event with id or correlation id 'nope'"
    result = _tidings("trace", "x", "--broker", "memory://", cwd=tmp_path)
    assert result.returncode == 2


# -- the demo ------------------------------------------------------------------------------


def test_trace_shows_a_compensated_order_and_a_dead_letter_of_the_demo(tmp_path: Path) -> None:
    db = "sqlite:///./shop.db"
    demo = _tidings(
        "demo", "--orders", "10", "--rate", "0", "--seed", "3", "--fail-rate", "0.5",
        "--headless", "--broker", db, cwd=tmp_path,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr

    commands = _tidings("tail", "inventory.commands", "--json", "--from-beginning", "-b", db,
                        cwd=tmp_path)  # fmt: skip
    releases = [json.loads(line) for line in commands.stdout.splitlines()]
    assert releases, "no order failed its payment"
    release = releases[0]
    lines, document = _trace(release["correlationid"], db, tmp_path)
    [root] = document["roots"]
    assert release["compensates"] == root["id"]
    chain = []
    node = root
    timeouts = []
    while True:
        chain.append(node["type"])
        # The saga's payment timeout: a branch of its own, scheduled and (later) ignored.
        timeouts += [c for c in node["children"] if c["type"] == "PaymentTimedOut"]
        children = [c for c in node["children"] if c["type"] != "PaymentTimedOut"]
        if not children:
            break
        [node] = children
    assert [t["source"] for t in timeouts] == ["/saga"]
    assert chain == [
        "OrderPlaced",
        "InventoryReserved",
        "PaymentRequested",
        "PaymentFailed",
        "ReleaseInventory",
        "InventoryReleased",
        "OrderCancelled",
    ]
    outcomes = {h["group"]: h["outcome"] for h in root["handlings"]}
    assert outcomes["inventory.reserve"] == "compensated"
    assert outcomes["analytics.observe"] == "handled"  # it saw the order, and undid nothing
    assert root["compensated_by"] == [release["id"]]
    assert f"compensated by ReleaseInventory {release['id']}" in lines[0]
    assert any(line.startswith("  inventory.reserve: compensated; waited ") for line in lines)
    assert any("ReleaseInventory  /saga  inventory.commands " in line for line in lines)

    letters = _tidings("dlq", "list", "order.events", "--json", "-b", db, cwd=tmp_path)
    [letter] = [json.loads(line) for line in letters.stdout.splitlines()]
    poison = letter["event"]["id"]
    lines, document = _trace(poison, db, tmp_path)
    [root] = document["roots"]
    assert (root["id"], root["type"], root["children"]) == (poison, "OrderPlaced", [])
    reserve = next(h for h in root["handlings"] if h["group"] == "inventory.reserve")
    assert (reserve["outcome"], reserve["attempts"], reserve["dead_letter_topic"]) == (
        "dead_lettered",
        1,
        "order.events.dlq",
    )
    assert reserve["error"].startswith("SchemaError(")
    assert any(
        line.startswith("  inventory.reserve: dead-lettered to order.events.dlq after 1 attempt: ")
        for line in lines
    )
