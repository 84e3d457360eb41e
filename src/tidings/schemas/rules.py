"""What a schema change can break: the rules, and one finding (:class:`Breaking`).

Each rule comes in pairs named from the new schema's side: the ``backward``
member breaks consumers on the new schema reading old data, the ``forward``
member breaks consumers still on the old schema reading new data. The same
edit seen from the other side is the other member of the pair (a required
field added is, read the other way, a required field removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["Breaking", "Direction", "Rule"]

Direction = Literal["backward", "forward"]


class Rule(StrEnum):
    """Why a change breaks a reader; see the module docstring of ``compat``."""

    #: backward: the new schema requires a field (without default) old data may lack
    REQUIRED_FIELD_ADDED = "required-field-added"
    #: forward: the new schema drops a field old consumers require
    REQUIRED_FIELD_REMOVED = "required-field-removed"
    #: backward: a field old data may omit is required now
    FIELD_MADE_REQUIRED = "field-made-required"
    #: forward: a field old consumers require may be omitted now
    FIELD_MADE_OPTIONAL = "field-made-optional"
    #: backward: a field old data carries is gone and the new schema forbids extras
    FIELD_REMOVED = "field-removed"
    #: forward: a new field, and the old schema forbids extras
    FIELD_ADDED = "field-added"
    #: backward: the new schema sets ``additionalProperties`` false, the old did not
    ADDITIONAL_PROPERTIES_CLOSED = "additional-properties-closed"
    #: forward: the new schema allows extra properties the old one forbade
    ADDITIONAL_PROPERTIES_OPENED = "additional-properties-opened"
    #: backward: fewer values accepted (number -> integer, string -> enum)
    TYPE_NARROWED = "type-narrowed"
    #: forward: more values written (integer -> number, enum -> string, T -> T | null)
    TYPE_WIDENED = "type-widened"
    #: both: neither type contains the other (string -> integer)
    TYPE_CHANGED = "type-changed"
    #: backward: an enum value old data may hold is gone
    ENUM_VALUE_REMOVED = "enum-value-removed"
    #: forward: a new enum value old consumers do not know
    ENUM_VALUE_ADDED = "enum-value-added"
    #: backward: a bound (minimum, maxLength, pattern, ...) is stricter
    CONSTRAINT_TIGHTENED = "constraint-tightened"
    #: forward: a bound old consumers check is looser or gone
    CONSTRAINT_LOOSENED = "constraint-loosened"
    #: both: a pattern or multipleOf changed so that neither contains the other
    CONSTRAINT_CHANGED = "constraint-changed"


@dataclass(frozen=True, slots=True)
class Breaking:
    """One incompatibility: where (``path``), which ``rule``, and what changed.

    ``path`` names the field from the payload root: ``items[].quantity`` is
    the ``quantity`` of every element of the ``items`` array, ``prices.*`` a
    value of the ``prices`` map, ``<root>`` the payload itself.
    ``direction`` says who breaks: ``backward`` (new consumers, old data) or
    ``forward`` (old consumers, new data); ``version`` is the previous
    schema's ``x-tidings-version`` when it has one.
    """

    path: str
    rule: Rule
    detail: str
    direction: Direction
    version: int | None = None

    def __str__(self) -> str:
        against = f" against v{self.version}" if self.version is not None else ""
        return f"{self.path}: {self.detail} ({self.rule}, {self.direction}{against})"
