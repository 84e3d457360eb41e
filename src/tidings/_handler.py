"""Reading a handler's signature: what it wants, and calling it with that."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tidings.context import Context
from tidings.depends import Depends, enter
from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.payload import decode_payload, payload_info

__all__ = ["HandlerSpec"]

_RAW = object()  # marker: hand over event.data as decoded from JSON
_LIST_ORIGINS = (list, Sequence, typing.Sequence, typing.List)  # noqa: UP006


def _resolve_hints(func: Callable[..., Any], localns: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return typing.get_type_hints(
            func, localns=dict(localns) if localns else None, include_extras=True
        )
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


#: What a handler parameter may be, for the messages that refuse one.
_ACCEPTED = (
    "a payload type (a pydantic model, dataclass, msgspec Struct, or dict/Any/bytes for the "
    "raw data), Event, Context, or a list of payloads or Events for a batch"
)
#: Annotations that name no payload: a handler never receives one of these.
_SCALARS = (str, int, float, bool, complex, type(None))


def handler_name(func: Callable[..., Any]) -> str:
    """``module:qualified.name`` of a handler, for messages."""
    target = func.func if isinstance(func, functools.partial) else func
    module = getattr(target, "__module__", None) or "?"
    return f"{module}:{getattr(target, '__qualname__', repr(target))}"


def _returned_types(hint: Any) -> list[type]:
    """The payload classes a return annotation says may be published (unknown -> [])."""
    if hint in (None, type(None), inspect.Parameter.empty, typing.NoReturn, Any, Event):
        return []
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType, list, tuple, *_LIST_ORIGINS):
        return [t for member in typing.get_args(hint) for t in _returned_types(member)]
    if isinstance(hint, type) and not _is_base(hint):
        return [hint]
    # dict, str, numbers: plain values (a request's reply) or typed at run time; a base
    # class (pydantic's BaseModel, a class with subclasses): the type is known only then.
    return []


def _is_base(cls: type) -> bool:
    library = cls.__module__.partition(".")[0]
    return library in ("builtins", "pydantic", "msgspec", "abc", "typing") or bool(
        cls.__subclasses__()
    )


class HandlerSpec:
    """How to call one handler: argument builders, batch or not, types accepted.

    Every parameter is checked here, at declaration: a parameter tidings cannot
    fill (a default value, a scalar annotation, a second payload) raises
    ConfigurationError naming the handler and the parameter.
    """

    def __init__(self, func: Callable[..., Any], localns: Mapping[str, Any] | None = None) -> None:
        if not callable(func):
            raise ConfigurationError(f"handler {func!r} is not callable")
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        where = handler_name(func)
        target = func.func if isinstance(func, functools.partial) else func
        self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - callable objects
        )
        hints = _resolve_hints(target, localns)
        self.batch = False
        #: event type name -> payload class; None means every type is accepted
        self.accepts: dict[str, type] | None = None
        self._args: list[str] = []  # "event" | "ctx" | "payload"
        payloads: list[str] = []
        #: argument position -> the dependency that fills it
        self._depends: dict[int, Depends] = {}
        self._app_values: dict[Depends, Any] = {}
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(param.name, inspect.Parameter.empty)
            dependency = _dependency(hint, param.default)
            if dependency is not None:
                self._depends[len(self._args)] = dependency
                self._args.append("dep")
                continue
            if typing.get_origin(hint) is typing.Annotated:
                hint = typing.get_args(hint)[0]
            if param.default is not param.empty:
                raise ConfigurationError(
                    f"handler {where}: parameter {param.name!r} has a default value, but "
                    f"tidings fills every parameter; each must be {_ACCEPTED}"
                )
            if typing.get_origin(hint) in _LIST_ORIGINS:
                self.batch = True
                (hint,) = typing.get_args(hint) or (Any,)
            if hint in _SCALARS:
                raise ConfigurationError(
                    f"handler {where}: parameter {param.name!r} is annotated "
                    f"{getattr(hint, '__name__', hint)}, which is not something tidings passes; "
                    f"each parameter must be {_ACCEPTED}"
                )
            try:
                kind = self._classify(param.name, hint)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"handler {where}: parameter {param.name!r}: {exc}"
                ) from None
            if kind == "payload":
                payloads.append(param.name)
            self._args.append(kind)
        if len(payloads) > 1:
            named = ", ".join(map(repr, payloads))
            raise ConfigurationError(
                f"handler {where} asks for more than one payload ({named}); "
                "take one payload, or the Event, or annotate each parameter as Event or Context"
            )
        #: Payload classes the return annotation says it may publish (checked against routes).
        returned = hints.get("return", inspect.Parameter.empty)
        if typing.get_origin(returned) is typing.Annotated:
            returned = typing.get_args(returned)[0]
        self.returns = _returned_types(returned)
        self.where = where
        #: Whether a Context must be built for it (batches read theirs from it).
        self.wants_context = self.batch or "ctx" in self._args
        #: The common handler: async, one untyped payload argument.
        self._plain = self.is_async and not self.batch and self.accepts is None
        self._plain = self._plain and self._args == ["payload"]

    @property
    def app_dependencies(self) -> list[Depends]:
        """The dependencies made once per app start (``scope="app"``)."""
        return [d for d in self._depends.values() if d.scope == "app"]

    def bind(self, values: dict[Depends, Any]) -> None:
        """Take the values of the app-scoped dependencies (made when the app starts)."""
        self._app_values = values

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
        if self._depends:
            return self._call_with_dependencies(event, ctx)
        return self._invoke(self._arguments(event, ctx))

    def _arguments(self, event: Event, ctx: Context | None) -> list[Any]:
        args: list[Any] = []
        for kind in self._args:
            if kind == "ctx":
                args.append(ctx)
            elif kind == "event":
                args.append(ctx.events if self.batch and ctx else event)
            elif self.batch and ctx:
                args.append([self._payload(e) for e in ctx.events])
            elif kind == "dep":
                args.append(None)  # filled by _call_with_dependencies
            else:
                args.append(self._payload(event))
        return args

    def _invoke(self, args: list[Any]) -> Awaitable[Any]:
        if self.is_async:
            return self.func(*args)  # type: ignore[no-any-return]
        return asyncio.to_thread(self.func, *args)

    async def _call_with_dependencies(self, event: Event, ctx: Context | None) -> Any:
        """Call with dependencies made for this handling; their cleanup sees the outcome."""
        args = self._arguments(event, ctx)
        async with contextlib.AsyncExitStack() as stack:
            for position, dependency in self._depends.items():
                if dependency.scope == "app":
                    args[position] = self._app_values[dependency]
                else:
                    args[position] = await enter(dependency, stack)
            return await self._invoke(args)


def _dependency(hint: Any, default: Any) -> Depends | None:
    """The Depends of a parameter: in its ``Annotated`` metadata, or as its default."""
    if isinstance(default, Depends):
        return default
    if typing.get_origin(hint) is typing.Annotated:
        found = [m for m in hint.__metadata__ if isinstance(m, Depends)]
        if found:
            return found[0]
    return None
