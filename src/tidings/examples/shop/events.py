"""The shop's event types and where they go: the one thing its services share.

Every service knows these payload types and the topic of each, nothing of the
other services. Events of one order carry the order id as partition key (so
they stay in order); stock events carry the SKU.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tidings import App, Event, Outgoing
from tidings.middleware import PublishFn
from tidings.payload import payload_info
from tidings.schemas import registry_for, schema_for

__all__ = [
    "ALL_TOPICS",
    "CUSTOMER_EVENTS",
    "INVENTORY_COMMANDS",
    "INVENTORY_EVENTS",
    "ORDER_DLQ",
    "ORDER_EVENTS",
    "ORDER_TIMEOUTS",
    "PAYMENT_COMMANDS",
    "PAYMENT_EVENTS",
    "SHIPPING_EVENTS",
    "CustomerFlagged",
    "InventoryRejected",
    "InventoryReleased",
    "InventoryReserved",
    "LineItem",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "OrderShipped",
    "PaymentFailed",
    "PaymentProcessed",
    "PaymentRefunded",
    "PaymentRequested",
    "PaymentTimedOut",
    "RefundPayment",
    "ReleaseInventory",
    "StockAdded",
    "StockShipped",
    "keyed",
    "parse",
    "partition_key",
    "prepare",
]

ORDER_EVENTS = "order.events"
ORDER_DLQ = "order.events.dlq"
INVENTORY_EVENTS = "inventory.events"
INVENTORY_COMMANDS = "inventory.commands"
PAYMENT_COMMANDS = "payment.commands"
PAYMENT_EVENTS = "payment.events"
SHIPPING_EVENTS = "shipping.events"
CUSTOMER_EVENTS = "customer.events"
#: The order saga's own timeouts (delayed events it sends itself).
ORDER_TIMEOUTS = "order.timeouts"
#: Every topic of the shop, its dead-letter topic included.
ALL_TOPICS = (
    ORDER_EVENTS,
    INVENTORY_EVENTS,
    INVENTORY_COMMANDS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    SHIPPING_EVENTS,
    CUSTOMER_EVENTS,
    ORDER_TIMEOUTS,
    ORDER_DLQ,
)


class LineItem(BaseModel):
    sku: str
    quantity: int = Field(gt=0)


class OrderPlaced(BaseModel):
    order_id: str
    customer_id: str
    items: list[LineItem] = Field(min_length=1)
    total: float = Field(ge=0)
    placed_at: datetime


class OrderConfirmed(BaseModel):
    order_id: str
    customer_id: str
    total: float


class OrderCancelled(BaseModel):
    order_id: str
    reason: str


class StockAdded(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    batch: str
    """Names the delivery of stock: a batch counts once, however often it is stored."""


class InventoryReserved(BaseModel):
    order_id: str
    customer_id: str
    items: list[LineItem]
    total: float


class InventoryRejected(BaseModel):
    order_id: str
    reason: str


class ReleaseInventory(BaseModel):
    """A command: give back what was reserved for an order (compensation)."""

    order_id: str
    reason: str


class InventoryReleased(BaseModel):
    order_id: str
    items: list[LineItem]
    reason: str


class StockShipped(BaseModel):
    """Reserved stock left the warehouse with a shipped order."""

    order_id: str
    items: list[LineItem]


class PaymentRequested(BaseModel):
    order_id: str
    customer_id: str
    amount: float


class PaymentProcessed(BaseModel):
    order_id: str
    customer_id: str
    amount: float
    placed_at: datetime | None = None


class PaymentFailed(BaseModel):
    order_id: str
    customer_id: str
    reason: str


class PaymentTimedOut(BaseModel):
    """The saga's timeout: no answer from payment in time (the order is cancelled)."""

    order_id: str


class RefundPayment(BaseModel):
    """A command: give the money back (a payment that came after its order was cancelled)."""

    order_id: str
    customer_id: str
    amount: float
    reason: str


class PaymentRefunded(BaseModel):
    order_id: str
    customer_id: str
    amount: float


class OrderShipped(BaseModel):
    order_id: str
    carrier: str
    tracking: str


class CustomerFlagged(BaseModel):
    customer_id: str
    reason: str
    order_ids: list[str]


_ROUTES: dict[type[BaseModel], str] = {
    OrderPlaced: ORDER_EVENTS,
    OrderConfirmed: ORDER_EVENTS,
    OrderCancelled: ORDER_EVENTS,
    StockAdded: INVENTORY_EVENTS,
    InventoryReserved: INVENTORY_EVENTS,
    InventoryRejected: INVENTORY_EVENTS,
    InventoryReleased: INVENTORY_EVENTS,
    StockShipped: INVENTORY_EVENTS,
    ReleaseInventory: INVENTORY_COMMANDS,
    PaymentRequested: PAYMENT_COMMANDS,
    PaymentProcessed: PAYMENT_EVENTS,
    PaymentFailed: PAYMENT_EVENTS,
    PaymentTimedOut: ORDER_TIMEOUTS,
    RefundPayment: PAYMENT_COMMANDS,
    PaymentRefunded: PAYMENT_EVENTS,
    OrderShipped: SHIPPING_EVENTS,
    CustomerFlagged: CUSTOMER_EVENTS,
}


def partition_key(payload: object) -> str | None:
    """The key a shop payload is partitioned by: its order, else its SKU or customer."""
    for name in ("order_id", "sku", "customer_id"):
        value = getattr(payload, name, None)
        if isinstance(value, str):
            return value
    return None


def keyed(next_publish: PublishFn) -> PublishFn:
    """Publish middleware: give every keyless shop event its partition key.

    Follow-ups returned by handlers carry no key of their own; this keeps all
    events of one order in one partition, in order.
    """

    async def publish(outgoing: Outgoing) -> None:
        events: list[Event] = []
        for event in outgoing.events:
            key = partition_key(event.data) if event.partitionkey is None else None
            events.append(event if key is None else event.replace(partitionkey=key))
        await next_publish(Outgoing(outgoing.topic, events, outgoing.deliver_at))

    return publish


def prepare(app: App) -> App:
    """Declare the shop's routing table on ``app`` and key its events."""
    for payload_type, topic in _ROUTES.items():
        app.route(payload_type, topic)
    app.add_publish_middleware(keyed)
    return app


async def register_schemas(broker: object) -> list[str]:
    """Register the JSON Schema of every shop payload in the broker's registry (the
    embedded broker's file, or ``TIDINGS_SCHEMAS``...); the types registered, [] if the
    broker keeps no schemas. An incompatible change is refused (SchemaCompatibilityError)."""
    registry = registry_for(broker)
    if registry is None:
        return []
    names = []
    for cls in _ROUTES:
        name = payload_info(cls).name
        await registry.register(name, schema_for(cls))
        names.append(name)
    return names


_BY_NAME: dict[str, type[BaseModel]] = {cls.__name__: cls for cls in _ROUTES}


def parse(event: Event) -> BaseModel | None:
    """The shop payload an event carries, or None (unknown type, or data that is invalid)."""
    cls = _BY_NAME.get(event.type)
    if cls is None:
        return None
    if isinstance(event.data, cls):
        return event.data
    try:
        return cls.model_validate(event.data)
    except ValueError:  # pydantic.ValidationError
        return None
