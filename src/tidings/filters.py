"""Event filters: the CloudEvents Subscriptions API dialects, without ``eval``.

A filter is built from plain data (as in a subscription's JSON) or with the
constructors here::

    {"all": [{"exact": {"type": "OrderPlaced"}}, {"not": {"prefix": {"source": "/test"}}}]}
    all_of(exact(type="OrderPlaced"), not_(prefix(source="/test")))

Attribute values are compared as their CloudEvents string form, case
sensitively. An absent attribute matches nothing (so ``not`` of it matches).
A list of filters means all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from tidings.errors import ConfigurationError
from tidings.event import Event

__all__ = [
    "Filter",
    "FilterSpec",
    "all_of",
    "any_of",
    "compile_filter",
    "exact",
    "not_",
    "prefix",
    "suffix",
]

FilterSpec: TypeAlias = "Filter | Mapping[str, Any] | Sequence[Any]"


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled filter: call :meth:`matches` with an event."""

    dialect: str
    spec: Any
    _test: Callable[[Event], bool]

    def matches(self, event: Event) -> bool:
        return self._test(event)

    __call__ = matches

    def to_dict(self) -> dict[str, Any]:
        """The filter as CloudEvents Subscriptions API JSON."""
        if self.dialect in ("all", "any"):
            return {self.dialect: [f.to_dict() for f in self.spec]}
        if self.dialect == "not":
            return {"not": self.spec.to_dict()}
        return {self.dialect: dict(self.spec)}


def _string_form(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def _attribute(event: Event, name: str) -> str | None:
    value = event.get(name)
    return None if value is None else _string_form(value)


def _pairs(dialect: str, attributes: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    if not isinstance(attributes, Mapping) or not attributes:
        raise ConfigurationError(
            f"'{dialect}' filter needs a non-empty mapping of attribute -> string value"
        )
    pairs = []
    for name, value in attributes.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"'{dialect}' filter attribute names must be strings")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"'{dialect}' filter value for {name!r} must be a string, got {value!r}"
            )
        if dialect != "exact" and value == "":
            raise ConfigurationError(f"'{dialect}' filter value for {name!r} must not be empty")
        pairs.append((name, value))
    return tuple(pairs)


def exact(**attributes: str) -> Filter:
    """Matches when each attribute equals its value."""
    pairs = _pairs("exact", attributes)
    return Filter("exact", dict(pairs), lambda e: all(_attribute(e, n) == v for n, v in pairs))


def prefix(**attributes: str) -> Filter:
    """Matches when each attribute starts with its value."""
    pairs = _pairs("prefix", attributes)

    def test(event: Event) -> bool:
        for name, value in pairs:
            actual = _attribute(event, name)
            if actual is None or not actual.startswith(value):
                return False
        return True

    return Filter("prefix", dict(pairs), test)


def suffix(**attributes: str) -> Filter:
    """Matches when each attribute ends with its value."""
    pairs = _pairs("suffix", attributes)

    def test(event: Event) -> bool:
        for name, value in pairs:
            actual = _attribute(event, name)
            if actual is None or not actual.endswith(value):
                return False
        return True

    return Filter("suffix", dict(pairs), test)


def all_of(*filters: FilterSpec) -> Filter:
    """Matches when every filter matches."""
    compiled = tuple(compile_filter(f) for f in filters)
    if not compiled:
        raise ConfigurationError("'all' filter needs at least one filter")
    return Filter("all", compiled, lambda e: all(f.matches(e) for f in compiled))


def any_of(*filters: FilterSpec) -> Filter:
    """Matches when at least one filter matches."""
    compiled = tuple(compile_filter(f) for f in filters)
    if not compiled:
        raise ConfigurationError("'any' filter needs at least one filter")
    return Filter("any", compiled, lambda e: any(f.matches(e) for f in compiled))


def not_(inner: FilterSpec) -> Filter:
    """Matches when ``inner`` does not."""
    compiled = compile_filter(inner)
    return Filter("not", compiled, lambda e: not compiled.matches(e))


_ATTRIBUTE_DIALECTS: dict[str, Callable[..., Filter]] = {
    "exact": exact,
    "prefix": prefix,
    "suffix": suffix,
}


def compile_filter(spec: FilterSpec) -> Filter:
    """Build a :class:`Filter` from a Filter, a dialect mapping or a list (= all)."""
    if isinstance(spec, Filter):
        return spec
    if isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
        return all_of(*spec)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigurationError(
            "a filter is a mapping with exactly one dialect key "
            "(exact, prefix, suffix, all, any, not), or a list of filters"
        )
    ((dialect, value),) = spec.items()
    if dialect in _ATTRIBUTE_DIALECTS:
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"'{dialect}' filter needs a mapping of attribute -> value")
        _pairs(dialect, value)
        return _ATTRIBUTE_DIALECTS[dialect](**value)
    if dialect in ("all", "any"):
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise ConfigurationError(f"'{dialect}' filter needs a list of filters")
        return all_of(*value) if dialect == "all" else any_of(*value)
    if dialect == "not":
        return not_(value)
    raise ConfigurationError(
        f"unknown filter dialect {dialect!r}; supported: exact, prefix, suffix, all, any, not"
    )
