"""A saga (process manager) declared once: its state type and a step per event type."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from tidings.errors import ConfigurationError
from tidings.payload import is_pydantic_model, payload_info
from tidings.retry import RetryPolicy
from tidings.routing import validate_topic

if TYPE_CHECKING:
    from tidings.app import App
    from tidings.sagas.runner import SagaRunner
    from tidings.sagas.store import SagaStore

__all__ = ["Saga", "Step"]

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["starts", "on", "timeout"]


@dataclass(frozen=True)
class Step:
    """How one event type moves a saga: the function, and when it applies.

    ``starts``: runs when no instance with the event's key exists yet (a later
    one is a duplicate, ignored); ``on``: runs on an instance that exists and
    has not completed; ``timeout``: like ``on``, for a payload the saga
    scheduled itself, and only if that very timeout is still pending.
    """

    payload_type: type
    func: Callable[..., Any]
    kind: Kind
    key: Callable[[Any], str] | None = None


class Saga(Generic[S]):
    """A process manager: state kept per correlation key, moved by events, emitting commands.

    ::

        saga = Saga("order", OrderState)

        @saga.starts(InventoryReserved)
        def reserved(state: OrderState, event: InventoryReserved, saga: SagaContext):
            saga.timeout(30, PaymentTimedOut(order_id=event.order_id))
            return PaymentRequested(order_id=event.order_id, amount=event.total)

        saga.install(app, store=SqlSagaStore("sqlite:///./sagas.db"))

    ``state`` is a pydantic model or a dataclass whose fields all have
    defaults: each instance starts from ``state()``. A step receives the
    state (to change in place), the event's payload and a
    :class:`~tidings.sagas.SagaContext`; it returns a command (or a list, or
    None) and may emit more through the context. An instance is keyed by
    the event's ``correlationid`` (the id of the event its flow started
    from) unless the step names a ``key`` function of the payload.
    Timeout payloads travel on ``timeouts_topic`` (default
    ``<name>.timeouts``).
    """

    def __init__(self, name: str, state: type[S], *, timeouts_topic: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a saga needs a non-empty name")
        if not (is_pydantic_model(state) or dataclasses.is_dataclass(state)):
            raise ConfigurationError(
                f"a saga's state must be a pydantic model or a dataclass, not {state!r}"
            )
        try:
            state()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{state.__qualname__}() failed ({exc}): every field of a saga's state "
                "needs a default, since each instance starts from state()"
            ) from exc
        self.name = name
        self.state_type = state
        self.timeouts_topic = validate_topic(timeouts_topic or f"{name}.timeouts")
        self.steps: dict[str, Step] = {}

    def add_step(
        self,
        payload_type: type,
        func: Callable[..., Any],
        *,
        kind: Kind = "on",
        key: Callable[[Any], str] | None = None,
    ) -> None:
        """Register ``func`` for events of ``payload_type``; the decorators call this."""
        if not isinstance(payload_type, type):
            raise ConfigurationError(f"a saga step needs a payload class, not {payload_type!r}")
        if kind not in ("starts", "on", "timeout"):
            raise ConfigurationError(f"unknown kind of step {kind!r}")
        if kind == "timeout" and key is not None:
            raise ConfigurationError("a timeout finds its instance itself: it takes no key")
        name = payload_info(payload_type).name
        if name in self.steps:
            raise ConfigurationError(f"saga {self.name!r} already has a step for {name!r}")
        self.steps[name] = Step(payload_type, func, kind, key)

    def starts(
        self, payload_type: type, *, key: Callable[[Any], str] | None = None
    ) -> Callable[[F], F]:
        """Decorator: ``payload_type`` starts an instance (see :class:`Step`)."""
        return self._decorator(payload_type, "starts", key)

    def on(
        self, payload_type: type, *, key: Callable[[Any], str] | None = None
    ) -> Callable[[F], F]:
        """Decorator: ``payload_type`` moves an existing, running instance."""
        return self._decorator(payload_type, "on", key)

    def on_timeout(self, payload_type: type) -> Callable[[F], F]:
        """Decorator: the step run when a timeout of ``payload_type`` fires (still pending)."""
        return self._decorator(payload_type, "timeout", None)

    def _decorator(
        self, payload_type: type, kind: Kind, key: Callable[[Any], str] | None
    ) -> Callable[[F], F]:
        def decorate(func: F) -> F:
            self.add_step(payload_type, func, kind=kind, key=key)
            return func

        return decorate

    @property
    def timeout_types(self) -> frozenset[type]:
        return frozenset(s.payload_type for s in self.steps.values() if s.kind == "timeout")

    def install(
        self,
        app: App,
        store: SagaStore | Any,
        *,
        topics: Sequence[str] | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        name: str | None = None,
    ) -> SagaRunner[S]:
        """Run this saga in ``app`` (before it starts): its subscriptions, instances in ``store``.

        ``store`` is a :class:`~tidings.sagas.SagaStore`, or a database (URL,
        pool or engine) for a :class:`~tidings.sagas.SqlSagaStore` that the
        app closes when it stops. ``topics`` default to the app's routes of
        the step types; the timeouts (on :attr:`timeouts_topic`) have a
        subscription of their own. Events of one key are handled in order; a
        race (between processes, or an event and a timeout) ends in a
        :class:`~tidings.errors.ConcurrencyError`, retried by ``retry``.
        """
        from tidings.sagas.runner import SagaRunner

        return SagaRunner(
            self, app, store, topics=topics, concurrency=concurrency, retry=retry, name=name
        )

    def __repr__(self) -> str:
        return f"<Saga {self.name!r} steps={sorted(self.steps)}>"
