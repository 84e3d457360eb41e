"""The module-level ``app`` of each service, for ``tidings run tidings.examples.shop.X:app``.

Built on first access, not at import: importing a service (as the in-process
demo does) must not open a broker from ``TIDINGS_BROKER``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tidings import App

__all__ = ["standalone"]


class _Service(Protocol):
    app: App


_built: dict[str, App] = {}


def standalone(module: str, name: str, build: Callable[[], _Service]) -> App:
    """The ``app`` attribute of ``module`` (a module ``__getattr__``), built once by ``build``."""
    if name != "app":
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    found = _built.get(module)
    if found is None:
        found = _built[module] = build().app
    return found
