"""The whole shop in one process: every service on one broker, an order generator, checks.

``tidings demo`` drives it; tests use it directly::

    async with Shop("memory://shop", outbox=Path("outbox.jsonl")) as shop:
        await shop.place(100, rate=0)
        verdict = await shop.settle(timeout=30)
        assert verdict.ok

The services share one broker client (one connection to the embedded file)
but nothing else: each is its own App and knows the others only by the
events they exchange. Fraud detection starts late, after a third of the
orders, and catches up from the stored payments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from tidings import App
from tidings.broker import Broker
from tidings.brokers import from_url, redact_url
from tidings.examples.shop.analytics import Analytics
from tidings.examples.shop.check import Auditor, Verdict
from tidings.examples.shop.config import ShopConfig, outbox_for, sagas_for
from tidings.examples.shop.eventlog import EventLog
from tidings.examples.shop.events import ALL_TOPICS, register_schemas
from tidings.examples.shop.fraud import FraudDetection
from tidings.examples.shop.invariants import Check
from tidings.examples.shop.inventory import Inventory
from tidings.examples.shop.mailer import Mailer
from tidings.examples.shop.orders import OrderGenerator, OrderService, place_orders
from tidings.examples.shop.payment import Payment
from tidings.examples.shop.saga import OrderSaga
from tidings.examples.shop.shipping import Shipping
from tidings.inspection import Inspectable
from tidings.sagas import MemorySagaStore, SagaStore, SqlSagaStore

__all__ = ["ServiceRow", "Shop", "Snapshot", "holds_shop_events"]


class _Service(Protocol):
    app: App


_BY_BROKER: dict[str, Callable[[Broker], _Service]] = {
    "orders": OrderService,
    "inventory": Inventory,
    "saga": OrderSaga,
    "shipping": Shipping,
    "analytics": Analytics,
    "fraud": FraudDetection,
}


#: Fraud detection joins after this share of the orders (or this many, when unbounded).
FRAUD_JOINS_AFTER = 1 / 3
FRAUD_JOINS_UNBOUNDED = 150


@dataclass(frozen=True)
class ServiceRow:
    name: str
    handled: int
    failed: int
    retried: int
    dead_lettered: int
    lag: int | None
    running: bool


@dataclass(frozen=True)
class Snapshot:
    """What the shop looks like now, for the live screen and the progress lines."""

    elapsed: float
    placed: int
    target: int
    poison: int
    confirmed: int
    shipped: int
    cancelled: int
    emails: int
    flagged: int
    revenue: float
    conversion: float
    orders_per_second: float
    topics: dict[str, int]
    services: list[ServiceRow]
    dead_letters: int

    @property
    def retries(self) -> int:
        return sum(s.retried for s in self.services)

    @property
    def lag(self) -> int | None:
        known = [s.lag for s in self.services if s.lag is not None]
        return sum(known) if known else None


async def holds_shop_events(broker: Broker) -> bool:
    """True if a connected broker already stores events on one of the shop's topics."""
    if isinstance(broker, Inspectable):
        return any(t.events and t.name in ALL_TOPICS for t in await broker.list_topics())
    return bool(await EventLog(broker, ALL_TOPICS).read_all())


class Shop:
    """Every service of the shop, in this process, on ``broker`` (a URL or a client)."""

    def __init__(
        self,
        broker: str | Broker,
        *,
        config: ShopConfig | None = None,
        outbox: Path | None = None,
        seed: int = 7,
    ) -> None:
        self.url = redact_url(broker) if isinstance(broker, str) else None
        self.broker = from_url(broker) if isinstance(broker, str) else broker
        config = config or ShopConfig()
        self.outbox = outbox or config.outbox or outbox_for(self.url)
        self._config = config
        # The saga's instances outlive a restart of the saga service (not of the shop
        # on memory://, whose broker forgets everything too).
        sagas = config.sagas or sagas_for(self.url)
        self.sagas: SagaStore = MemorySagaStore() if sagas is None else SqlSagaStore(sagas)
        self.orders = OrderService(self.broker)
        self.inventory = Inventory(self.broker)
        self.payment = Payment(self.broker, config)
        self.saga = OrderSaga(self.broker, config, self.sagas)
        self.shipping = Shipping(self.broker)
        self.mailer = Mailer(self.broker, self.outbox)
        self.analytics = Analytics(self.broker)
        self.fraud = FraudDetection(self.broker)
        # Order ids from the seed too: the same seed places the same orders, so the
        # decisions made from their ids (declined, timed out) repeat run after run.
        self.generator = OrderGenerator(self.orders.app, seed=seed, run=f"s{seed}")
        self.auditor = Auditor(self.broker, self.outbox, idle=self.idle)
        self.placed = 0
        self.target = 0
        self._started_at = time.monotonic()
        self._running: list[App] = []
        #: The event types whose schemas were registered at start ([]: no registry).
        self.schemas: list[str] = []

    @property
    def apps(self) -> list[App]:
        return [
            self.orders.app,
            self.inventory.app,
            self.payment.app,
            self.saga.app,
            self.shipping.app,
            self.mailer.app,
            self.analytics.app,
            self.fraud.app,
        ]

    def idle(self) -> bool:
        return all(app.idle for app in self._running)

    async def start(self) -> None:
        """Connect, start every service but fraud detection, and stock the shelves."""
        await self.broker.connect()
        if not self.broker.capabilities.replay and not isinstance(self.broker, Inspectable):
            # No history to read back later (SNS/SQS, MQTT): the log's reader group must
            # exist before the first event is published.
            await self.auditor.poll()
        # Before the services connect: each reads the registry then, and checks its events.
        self.schemas = await register_schemas(self.broker)
        self._started_at = time.monotonic()
        for app in self.apps:
            if app is not self.fraud.app:
                await self._start(app)
        await self.inventory.load()

    async def _start(self, app: App) -> None:
        await app.start()
        self._running.append(app)

    async def restart(self, name: str) -> None:
        """Stop the service ``name`` (``"mailer"``...) and start a new instance in its place.

        The new instance remembers nothing but what it rebuilds (the inventory
        from its events, the mailer from its outbox); its consumer groups
        resume where the old one stopped.
        """
        old: _Service = getattr(self, name)
        await old.app.stop()
        if old.app in self._running:
            self._running.remove(old.app)
        new = self._build(name)
        setattr(self, name, new)
        await self._start(new.app)
        if isinstance(new, Inventory):
            await new.load()
        if isinstance(new, OrderService):
            self.generator.app = new.app

    def _build(self, name: str) -> _Service:
        if name == "payment":
            return Payment(self.broker, self._config)
        if name == "mailer":
            return Mailer(self.broker, self.outbox)
        if name == "saga":
            return OrderSaga(self.broker, self._config, self.sagas)
        return _BY_BROKER[name](self.broker)

    async def place(self, count: int, rate: float, stop: asyncio.Event | None = None) -> int:
        """Place ``count`` orders (0: until ``stop`` is set) at ``rate`` per second (0: at once).

        Fraud detection joins part-way through. Returns how many were placed.
        """
        self.target = count
        first = max(int(count * FRAUD_JOINS_AFTER), 1) if count else FRAUD_JOINS_UNBOUNDED
        done = await place_orders(self.generator, first, rate, stop, self._placed)
        if self.fraud.app not in self._running:
            await self._start(self.fraud.app)
        if count == 0 or count > first:
            base = done
            done += await place_orders(
                self.generator,
                count - first if count else 0,
                rate,
                stop,
                lambda n: self._placed(base + n),
            )
        self._placed(done)
        return done

    def _placed(self, count: int) -> None:
        self.placed = count

    async def settle(self, timeout: float) -> Verdict:
        """Wait until every order has run its course (or ``timeout``), then check everything."""
        verdict = await self.auditor.settle(timeout, self.placed)
        facts = verdict.facts
        verdict.checks.append(
            Check(
                "the inventory's live stock matches the stock rebuilt from its events",
                self.inventory.stock.levels() == facts.stock.levels(),
            )
        )
        heard = {o: s.status for o, s in self.orders.orders.items() if s.placed}
        logged = {
            o: "cancelled" if o in facts.cancelled else "shipped" if o in facts.shipped else "?"
            for o in facts.orders
        }
        verdict.checks.append(
            Check("the order service saw every order end as the log says", heard == logged)
        )
        return verdict

    async def snapshot(self) -> Snapshot:
        lag = await self.auditor.lag()
        metrics = self.analytics.metrics
        services = []
        for app in self.apps:
            stats = app.stats().values()
            service_lag = None
            if lag is not None and app in self._running:
                service_lag = sum(n for g, n in lag.items() if g.startswith(f"{app.name}."))
            services.append(
                ServiceRow(
                    app.name,
                    sum(s.handled for s in stats),
                    sum(s.failed for s in stats),
                    sum(s.retried for s in stats),
                    sum(s.dead_lettered for s in stats),
                    service_lag,
                    app in self._running,
                )
            )
        return Snapshot(
            elapsed=time.monotonic() - self._started_at,
            placed=self.placed,
            target=self.target,
            poison=self.generator.poison,
            confirmed=len(metrics.confirmed),
            shipped=self.orders.count("shipped"),
            cancelled=self.orders.count("cancelled"),
            emails=self.mailer.sent,
            flagged=len(self.fraud.flagged),
            revenue=metrics.revenue,
            conversion=metrics.conversion,
            orders_per_second=metrics.orders_per_second(),
            topics=dict(metrics.events),
            services=services,
            dead_letters=metrics.dead_letters,
        )

    async def stop(self) -> None:
        """Stop every service (each drains its in-flight events), then close the broker."""
        for app in reversed(self._running):
            await app.stop()
        self._running.clear()
        await self.sagas.close()
        await self.auditor.close()
        await self.broker.close()

    async def __aenter__(self) -> Shop:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
