"""An App's startup and shutdown hooks, and its app-scoped dependencies.

Startup hooks run in the order added, when the app starts (after the broker
is connected, before any subscription takes an event); the first that fails
stops the start with :class:`~tidings.errors.StartupError`. Then the
app-scoped dependencies of the handlers are made. Shutdown hooks run in the
order added, after the subscriptions have drained and before the broker is
closed; a failing one is logged and the others still run. Then the
app-scoped dependencies are closed.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tidings._handler import HandlerSpec, handler_name
from tidings.depends import Depends, enter
from tidings.errors import StartupError

__all__ = ["Hook", "Lifecycle"]

log = logging.getLogger("tidings.app")
Hook = Callable[[], Any]
H = TypeVar("H", bound=Hook)


class Lifecycle:
    """Hooks and app-scoped dependencies of one App (run once per start)."""

    def __init__(self) -> None:
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []
        self._dependencies: contextlib.AsyncExitStack | None = None
        self._started = False  # the startup hooks all ran: the shutdown hooks will

    def add(self, hooks: list[Hook], hook: H) -> H:
        if not callable(hook):
            raise TypeError(f"a lifecycle hook must be callable, got {hook!r}")
        hooks.append(hook)
        return hook

    async def start(self, specs: Iterable[HandlerSpec]) -> None:
        """Run the startup hooks, then make the app-scoped dependencies."""
        self._started = False
        for hook in self.startup:
            try:
                await _call(hook)
            except Exception as exc:
                raise StartupError(f"startup hook {handler_name(hook)} failed: {exc!r}") from exc
        stack = self._dependencies = contextlib.AsyncExitStack()
        values: dict[Depends, Any] = {}
        for spec in specs:
            for dependency in spec.app_dependencies:
                if dependency not in values:
                    try:
                        values[dependency] = await enter(dependency, stack)
                    except Exception as exc:
                        raise StartupError(
                            f"dependency {handler_name(dependency.factory)} of handler "
                            f"{spec.where} failed: {exc!r}"
                        ) from exc
            spec.bind(values)
        self._started = True

    async def stop(self) -> None:
        """Run the shutdown hooks (if the start completed), then close the dependencies."""
        for hook in self.shutdown if self._started else ():
            try:
                await _call(hook)
            except Exception:
                log.exception("shutdown hook %s failed", handler_name(hook))
        self._started = False
        stack, self._dependencies = self._dependencies, None
        if stack is not None:
            try:
                await stack.aclose()
            except Exception:
                log.exception("closing the app's dependencies failed")


async def _call(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
