"""Schema compatibility: can consumers and producers on different versions talk?

The primitive is *data written with W is readable by R*: every document the
writer schema W accepts is one the reader schema R accepts too
(:func:`~tidings.schemas._readable.readable`). The modes, with Confluent
Schema Registry's meanings, are that primitive applied one way or both:

- ``BACKWARD`` (the default): consumers on the new schema read data written
  with the previous one: ``readable(reader=new, writer=previous)``. Upgrade
  consumers first.
- ``FORWARD``: consumers on the previous schema read data written with the
  new one: ``readable(reader=previous, writer=new)``. Upgrade producers first.
- ``FULL``: both.
- ``..._TRANSITIVE``: the same against *every* previous version, not only the
  latest (v3 may be compatible with v2 and still not with v1).
- ``NONE``: no check.

So each rule breaks one direction and not the other. As reader the new
schema must not *narrow* what old data may hold: adding a required field
without a default, making a field required, narrowing a type (number ->
integer, string -> enum), removing an enum value, tightening a bound, closing
``additionalProperties`` or removing a field the closed schema no longer
allows all break BACKWARD. As writer the new schema must not *widen* what old
consumers expect: removing a field they require, making it optional, widening
a type (integer -> number, T -> T | null), adding an enum value, loosening a
bound, or adding a field to a closed schema all break FORWARD. Changing a
type to an unrelated one, or a pattern, breaks both.

Two assumptions, both about what a writer's data holds:

- a property the writer schema does not declare is absent from its data,
  even when its ``additionalProperties`` leaves it open (else adding any
  optional field would break BACKWARD); closing ``additionalProperties`` is
  still breaking, since old data may carry extras;
- a writer only promises the fields in its ``required`` list: a field with a
  default that is no longer required breaks FORWARD, because the schema lets
  a producer omit it (tidings' own encoders write defaults; other producers
  need not).

``format`` and annotations (``title``, ``description``, ``default`` values)
are not compared; ``$ref``s are local (``#/...``) and followed on each side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from tidings.errors import ConfigurationError, SchemaError
from tidings.schemas._generate import VERSION_KEYWORD
from tidings.schemas._readable import readable
from tidings.schemas.rules import Breaking

__all__ = [
    "Compatibility",
    "SchemaCompatibilityError",
    "check",
    "ensure_compatible",
    "parse_mode",
]

Schema = Mapping[str, Any]


class Compatibility(StrEnum):
    """Which previous versions a new schema is checked against, and which way."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def backward(self) -> bool:
        """New consumers must read old data."""
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old consumers must read new data."""
        return self.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Checked against every previous version, not only the latest."""
        return self.endswith("_TRANSITIVE")


class SchemaCompatibilityError(SchemaError):
    """A new schema breaks consumers or producers of a previous version.

    ``breaking`` lists every finding; the message names each field.
    """

    def __init__(
        self, breaking: Sequence[Breaking], mode: Compatibility, subject: str = ""
    ) -> None:
        name = f"schema {subject}" if subject else "the new schema"
        lines = "".join(f"\n  - {finding}" for finding in breaking)
        super().__init__(
            f"{name} is not {mode} compatible:{lines}\n"
            "make the change compatible (an optional field, a default) "
            "or publish it as a new event type"
        )
        self.breaking = list(breaking)
        self.mode = mode


def check(
    new: Schema,
    previous: Sequence[Schema],
    mode: Compatibility | str = Compatibility.BACKWARD,
) -> list[Breaking]:
    """What breaks if ``new`` follows ``previous`` (oldest first) under ``mode``.

    An empty list means compatible. Non-transitive modes compare with the
    last of ``previous`` only.

    >>> old = {"type": "object", "properties": {"id": {"type": "string"}}}
    >>> new = {**old, "required": ["id"]}
    >>> [str(b) for b in check(new, [old])]
    ['id: made required (field-made-required, backward)']
    """
    mode = parse_mode(mode)
    if mode is Compatibility.NONE:
        return []
    found: list[Breaking] = []
    for old in previous if mode.transitive else previous[-1:]:
        version = old.get(VERSION_KEYWORD)
        version = version if isinstance(version, int) else None
        if mode.backward:
            found += readable(new, old, new_is_reader=True, version=version)
        if mode.forward:
            found += readable(old, new, new_is_reader=False, version=version)
    return found


def ensure_compatible(
    new: Schema,
    previous: Sequence[Schema],
    mode: Compatibility | str = Compatibility.BACKWARD,
) -> None:
    """Raise SchemaCompatibilityError when :func:`check` finds anything."""
    mode = parse_mode(mode)
    breaking = check(new, previous, mode)
    if breaking:
        title = new.get("title")
        raise SchemaCompatibilityError(breaking, mode, title if isinstance(title, str) else "")


def parse_mode(mode: Compatibility | str) -> Compatibility:
    """A mode from its name, in any case; raises ConfigurationError naming the choices."""
    try:
        return Compatibility(mode.upper())
    except ValueError:
        choices = ", ".join(Compatibility)
        raise ConfigurationError(
            f"unknown compatibility mode {mode!r}; choose one of {choices}"
        ) from None
