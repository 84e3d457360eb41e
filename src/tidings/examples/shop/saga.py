"""The order saga: moves an order from reserved to confirmed, or cancels it and undoes.

::

    InventoryReserved  -> PaymentRequested, and a payment timeout
    InventoryRejected  -> OrderCancelled            (out of stock; done)
    PaymentProcessed   -> OrderConfirmed            (done)
    PaymentFailed      -> ReleaseInventory          (compensation: ``compensates``
                                                     names the order's OrderPlaced)
    payment timeout    -> ReleaseInventory          (compensation, as above)
    InventoryReleased  -> OrderCancelled
    PaymentProcessed after the timeout -> RefundPayment  (the money goes back)

An instance is keyed by the correlation id of its events: the id of the
order's ``OrderPlaced``, which every event of the order's flow carries. Its
state is saved before its commands are sent, with the commands themselves, so
a redelivered event changes nothing and sends the same commands again (see
:mod:`tidings.sagas.runner`).

A payment that answers after the timeout finds the order cancelled and its
stock released: it is refunded, and the saga completes once both the payment
and the release are known. The invariants check that every payment taken
belongs to a confirmed order or was refunded.

The state lives in the database of ``SHOP_SAGAS``, else next to the embedded
broker's file, else in memory on ``memory://`` (see
:func:`~tidings.examples.shop.config.sagas_for`). Run it alone with
``tidings run tidings.examples.shop.saga:app``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tidings import App, RetryPolicy
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.config import ShopConfig, sagas_for
from tidings.examples.shop.events import (
    ORDER_TIMEOUTS,
    InventoryRejected,
    InventoryReleased,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    PaymentFailed,
    PaymentProcessed,
    PaymentRequested,
    PaymentTimedOut,
    RefundPayment,
    ReleaseInventory,
    prepare,
)
from tidings.sagas import MemorySagaStore, Saga, SagaContext, SagaStore, SqlSagaStore

__all__ = ["OrderSaga", "OrderState", "order_saga"]

#: Lost optimistic-concurrency races and database hiccups: tried again, soon.
RETRY = RetryPolicy(max_attempts=8, initial_delay=0.02, max_delay=0.5)


class OrderState(BaseModel):
    customer_id: str = ""
    amount: float = 0.0
    status: Literal["new", "awaiting payment", "releasing", "cancelled"] = "new"
    payment: Literal["pending", "processed", "failed", "refunded"] = "pending"


def order_saga(payment_timeout: float) -> Saga[OrderState]:
    """The order saga, cancelling orders whose payment takes over ``payment_timeout`` s."""
    saga = Saga("order", OrderState, timeouts_topic=ORDER_TIMEOUTS)

    @saga.starts(InventoryRejected)
    def rejected(state: OrderState, event: InventoryRejected, ctx: SagaContext) -> OrderCancelled:
        state.status = "cancelled"
        ctx.complete()
        return OrderCancelled(order_id=event.order_id, reason=event.reason)

    @saga.starts(InventoryReserved)
    def reserved(state: OrderState, event: InventoryReserved, ctx: SagaContext) -> PaymentRequested:
        state.customer_id, state.amount = event.customer_id, event.total
        state.status = "awaiting payment"
        ctx.timeout(payment_timeout, PaymentTimedOut(order_id=event.order_id))
        return PaymentRequested(
            order_id=event.order_id, customer_id=event.customer_id, amount=event.total
        )

    @saga.on(PaymentProcessed)
    def paid(
        state: OrderState, event: PaymentProcessed, ctx: SagaContext
    ) -> OrderConfirmed | RefundPayment:
        if state.status == "awaiting payment":
            state.payment = "processed"
            ctx.complete()
            return OrderConfirmed(
                order_id=event.order_id, customer_id=event.customer_id, total=event.amount
            )
        # Too late: the order is being cancelled, its stock released. Give the money back.
        state.payment = "refunded"
        if state.status == "cancelled":
            ctx.complete()
        return RefundPayment(
            order_id=event.order_id,
            customer_id=event.customer_id,
            amount=event.amount,
            reason="paid after the order was cancelled",
        )

    @saga.on(PaymentFailed)
    def declined(state: OrderState, event: PaymentFailed, ctx: SagaContext) -> None:
        state.payment = "failed"
        if state.status == "awaiting payment":
            ctx.cancel_timeout(PaymentTimedOut)
            release(state, event.order_id, f"payment failed: {event.reason}", ctx)
        elif state.status == "cancelled":
            ctx.complete()  # a late refusal: nothing was taken

    @saga.on_timeout(PaymentTimedOut)
    def timed_out(state: OrderState, event: PaymentTimedOut, ctx: SagaContext) -> None:
        release(state, event.order_id, f"no payment within {payment_timeout:g}s", ctx)

    @saga.on(InventoryReleased)
    def released(state: OrderState, event: InventoryReleased, ctx: SagaContext) -> OrderCancelled:
        state.status = "cancelled"
        if state.payment != "pending":  # else: wait for the payment's answer (late)
            ctx.complete()
        return OrderCancelled(order_id=event.order_id, reason=f"{event.reason}; stock released")

    return saga


def release(state: OrderState, order_id: str, reason: str, ctx: SagaContext) -> None:
    """Undo the reservation: the stock was reserved when inventory handled the order's
    OrderPlaced, the root of the flow, which the compensation names (``ctx.root``)."""
    state.status = "releasing"
    ctx.compensate(ReleaseInventory(order_id=order_id, reason=reason))


class OrderSaga:
    """The saga service: its App, and the saga's instances in ``store``."""

    def __init__(
        self,
        broker: str | Broker | None = None,
        config: ShopConfig | None = None,
        store: SagaStore | None = None,
    ) -> None:
        self.config = config or ShopConfig.from_env()
        self.app = prepare(App("saga", broker=broker))
        if store is None:
            database = self.config.sagas or sagas_for(self.app.broker_url)
            store = MemorySagaStore() if database is None else SqlSagaStore(database)
            self.app.on_shutdown(store.close)
        self.runner = order_saga(self.config.payment_timeout).install(self.app, store, retry=RETRY)


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, OrderSaga)
