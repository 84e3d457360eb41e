"""Dependencies of handlers: ``Annotated[Db, Depends(get_db)]`` parameters.

A factory takes no arguments and returns the value, or yields it (a generator
or async generator: the code after ``yield`` runs when the scope ends, and
sees the handler's exception, as in :func:`contextlib.contextmanager`).

* ``scope="handling"`` (the default): made for each handling, closed when the
  handler has returned or raised (a database session per event);
* ``scope="app"``: made once when the app starts, after its startup hooks,
  shared by every handling, closed when the app stops (a connection pool).

No global container: a dependency is the ``Depends`` object in the annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tidings.errors import ConfigurationError

__all__ = ["Depends", "Scope", "enter"]

Scope = Literal["handling", "app"]


@dataclass(frozen=True, eq=False)
class Depends:
    """Mark a handler parameter as a dependency made by ``factory``."""

    factory: Callable[[], Any]
    scope: Scope = "handling"

    def __post_init__(self) -> None:
        if not callable(self.factory):
            raise ConfigurationError(f"Depends needs a callable, got {self.factory!r}")
        if self.scope not in ("handling", "app"):
            raise ConfigurationError(
                f"Depends scope must be 'handling' or 'app', not {self.scope!r}"
            )
        required = [
            p.name
            for p in inspect.signature(self.factory).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            raise ConfigurationError(
                f"dependency factory {getattr(self.factory, '__qualname__', self.factory)!r} "
                f"takes no arguments, but asks for {', '.join(required)}"
            )


async def enter(dependency: Depends, stack: contextlib.AsyncExitStack) -> Any:
    """Make ``dependency``'s value; its cleanup (after ``yield``) is pushed on ``stack``."""
    factory = dependency.factory
    if inspect.isasyncgenfunction(factory):
        return await stack.enter_async_context(contextlib.asynccontextmanager(factory)())
    if inspect.isgeneratorfunction(factory):
        return stack.enter_context(contextlib.contextmanager(factory)())
    value = factory()
    if inspect.isawaitable(value):
        value = await value
    return value


def is_async_callable(func: Callable[..., Any]) -> bool:
    return asyncio.iscoroutinefunction(func) or asyncio.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - callable objects
    )
