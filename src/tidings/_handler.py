"""Reading a handler's signature: what it wants, and calling it with that."""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tidings.context import Context
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.payload import decode_payload, payload_info

__all__ = ["HandlerSpec"]

_RAW = object()  # marker: hand over event.data as decoded from JSON
_LIST_ORIGINS = (list, Sequence, typing.Sequence, typing.List)  # noqa: UP006


def _resolve_hints(func: Callable[..., Any], localns: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, localns=dict(localns) if localns else None)
    except (NameError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot resolve the type hints of handler {func.__qualname__}: {exc}; "
            "define the types it names at module level"
        ) from exc


def _payload_types(hint: Any) -> dict[str, type] | object:
    """A map of event type name -> payload class, or _RAW for untyped data."""
    if hint in (inspect.Parameter.empty, Any, dict, Mapping, object, bytes, str):
        return _RAW
    origin = typing.get_origin(hint)
    if origin in (dict, Mapping, typing.Mapping, typing.Dict):  # noqa: UP006
        return _RAW
    if origin in (typing.Union, types.UnionType):
        out: dict[str, type] = {}
        for member in typing.get_args(hint):
            if member is type(None):
                continue
            found = _payload_types(member)
            if found is _RAW:
                return _RAW
            out.update(typing.cast(dict[str, type], found))
        return out
    if isinstance(hint, type):
        return {payload_info(hint).name: hint}
    raise ConfigurationError(f"unsupported payload annotation {hint!r}")


class HandlerSpec:
    """How to call one handler: argument builders, batch or not, types accepted."""

    def __init__(self, func: Callable[..., Any], localns: Mapping[str, Any] | None = None) -> None:
        if not callable(func):
            raise ConfigurationError(f"handler {func!r} is not callable")
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        target = func.func if isinstance(func, functools.partial) else func
        self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - callable objects
        )
        hints = _resolve_hints(target, localns)
        self.batch = False
        #: event type name -> payload class; None means every type is accepted
        self.accepts: dict[str, type] | None = None
        self._args: list[str] = []  # "event" | "ctx" | "payload"
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(param.name, inspect.Parameter.empty)
            if typing.get_origin(hint) in _LIST_ORIGINS:
                self.batch = True
                (hint,) = typing.get_args(hint) or (Any,)
            self._args.append(self._classify(param.name, hint))
        if self._args.count("payload") > 1:
            raise ConfigurationError(f"handler {self.name} asks for more than one payload")
        #: Whether a Context must be built for it (batches read theirs from it).
        self.wants_context = self.batch or "ctx" in self._args
        #: The common handler: async, one untyped payload argument.
        self._plain = self.is_async and not self.batch and self.accepts is None
        self._plain = self._plain and self._args == ["payload"]

    def _classify(self, name: str, hint: Any) -> str:
        if hint is Event:
            return "event"
        if hint is Context:
            return "ctx"
        if hint is inspect.Parameter.empty and name in ("event", "ctx", "context"):
            return "event" if name == "event" else "ctx"
        found = _payload_types(hint)
        if found is not _RAW:
            self.accepts = found  # type: ignore[assignment]
        return "payload"

    def accepts_type(self, event_type: str) -> bool:
        return self.accepts is None or event_type in self.accepts

    def _payload(self, event: Event) -> Any:
        if self.accepts is None:
            return event.data
        return decode_payload(event.data, self.accepts[event.type])

    def call(self, event: Event, ctx: Context | None) -> Awaitable[Any]:
        """Call the handler with what it asked for: ``event``, or ``ctx.events`` (batch).

        ``ctx`` may be None when the handler asks for no context and is not a
        batch handler. Returns the awaitable to await (one coroutine less per event).
        """
        if self._plain:
            return self.func(event.data)  # type: ignore[no-any-return]
        args: list[Any] = []
        for kind in self._args:
            if kind == "ctx":
                args.append(ctx)
            elif kind == "event":
                args.append(ctx.events if self.batch and ctx else event)
            elif self.batch and ctx:
                args.append([self._payload(e) for e in ctx.events])
            else:
                args.append(self._payload(event))
        if self.is_async:
            return self.func(*args)  # type: ignore[no-any-return]
        return asyncio.to_thread(self.func, *args)
