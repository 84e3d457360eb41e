"""Finding the App a ``MODULE:APP`` argument names, the way uvicorn finds an ASGI app."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from tidings.app import App
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.errors import TidingsError

__all__ = ["DEFAULT_ATTRIBUTE", "load_app"]

#: The attribute looked up when the target names only a module.
DEFAULT_ATTRIBUTE = "app"


def load_app(target: str, factory: bool = False) -> App:
    """Import ``MODULE[:ATTRIBUTE]`` with the current directory importable; return the App.

    With ``factory``, the attribute is a function that takes no arguments and
    returns the App (called here).

    Raises :class:`CommandError` for a malformed target, a module that does
    not exist, a missing attribute or one that is not an App (exit code 2),
    and for a module that fails to import (exit code 1).
    """
    module_name, _, attribute = target.partition(":")
    attribute = attribute or DEFAULT_ATTRIBUTE
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise CommandError(f"{target!r} is not MODULE:APP, e.g. 'shop.orders:app'", EXIT_USAGE)
    found = load_object(f"{module_name}:{attribute}", "APP")
    if factory:
        if not callable(found):
            raise CommandError(
                f"{module_name}:{attribute} is a {type(found).__name__}, not a function "
                "(--factory calls it to make the App)",
                EXIT_USAGE,
            )
        try:
            found = found()
        except TidingsError as exc:
            raise CommandError(f"{module_name}:{attribute}() failed: {exc}") from None
        if not isinstance(found, App):
            raise CommandError(
                f"{module_name}:{attribute}() returned a {type(found).__name__}, not a tidings.App",
                EXIT_USAGE,
            )
    if not isinstance(found, App):
        raise CommandError(
            f"{module_name}:{attribute} is a {type(found).__name__}, not a tidings.App",
            EXIT_USAGE,
        )
    return found


def load_object(target: str, what: str) -> object:
    """Import ``MODULE:ATTRIBUTE`` (dotted attributes allowed) with the current directory
    importable; CommandError for a malformed target or a missing attribute (exit 2), and
    for a module that fails to import (exit 1). ``what`` names the attribute in messages."""
    module_name, _, attribute = target.partition(":")
    if (
        not module_name
        or not attribute
        or not all(part.isidentifier() for part in module_name.split("."))
    ):
        raise CommandError(f"{target!r} is not MODULE:{what}", EXIT_USAGE)
    if not all(part.isidentifier() for part in attribute.split(".")):
        raise CommandError(f"{attribute!r} in {target!r} is not an attribute name", EXIT_USAGE)
    module = _import(module_name)
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CommandError(
                f"module {module_name!r} has no attribute {attribute!r}", EXIT_USAGE
            ) from None
    return found


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The target itself (or a package on its path) is missing: a usage error.
        # A module the target imports is missing: the target is broken.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CommandError(f"cannot import module {module_name!r}: {exc}", EXIT_USAGE) from None
        raise CommandError(f"importing module {module_name!r} failed: {exc}") from None
    except (ImportError, SyntaxError, TidingsError) as exc:
        raise CommandError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
