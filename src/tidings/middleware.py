"""Middleware: callables that wrap a handler, or wrap publishing.

A handler middleware takes the next :data:`Handle` and returns a new one::

    def timing(next_handle: Handle) -> Handle:
        async def handle(ctx: Context) -> list[Event]:
            started = time.perf_counter()
            try:
                return await next_handle(ctx)
            finally:
                print(ctx.event.type, time.perf_counter() - started)
        return handle

A :data:`Handle` receives the :class:`~tidings.context.Context` and returns
the follow-up events to publish; raising hands the failure to the retry
policy. A publish middleware wraps :data:`PublishFn`, which receives an
:class:`Outgoing` (a topic and the events bound for it), the same way. Stacks are
built once when the app starts; the first middleware added is the outermost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias, TypeVar

import msgspec

from tidings.context import Context
from tidings.event import Event

__all__ = [
    "Handle",
    "HandlerMiddleware",
    "Outgoing",
    "PublishFn",
    "PublishMiddleware",
    "build_stack",
]


class Outgoing(msgspec.Struct, frozen=True):
    """Events on their way to one topic (one broker call)."""

    topic: str
    events: Sequence[Event]
    #: Unix time before which the events must not be delivered (delayed delivery).
    deliver_at: float | None = None


Handle: TypeAlias = Callable[[Context], Awaitable[list[Event]]]
HandlerMiddleware: TypeAlias = Callable[[Handle], Handle]
PublishFn: TypeAlias = Callable[[Outgoing], Awaitable[None]]
PublishMiddleware: TypeAlias = Callable[[PublishFn], PublishFn]

F = TypeVar("F")


def build_stack(inner: F, middleware: Sequence[Callable[[F], F]]) -> F:
    """Wrap ``inner`` so that ``middleware[0]`` runs first (outermost)."""
    for wrap in reversed(middleware):
        inner = wrap(inner)
    return inner
