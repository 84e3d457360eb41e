"""Payload types: how a Python type maps to a CloudEvents ``type`` and version.

A payload type is a pydantic model, a dataclass, or any class; its CloudEvents
type name defaults to the class name and its schema version to 1. Set both
with the :func:`event_type` decorator or with class attributes
``__event_type__`` / ``__event_version__``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import msgspec

from tidings.errors import ConfigurationError, SchemaError

__all__ = [
    "PayloadInfo",
    "decode_payload",
    "event_type",
    "json_hook",
    "payload_info",
    "to_jsonable",
]

T = TypeVar("T")


class PayloadInfo(NamedTuple):
    """The CloudEvents ``type`` name and schema version of a payload type."""

    name: str
    version: int


_cache: dict[type, PayloadInfo] = {}


def event_type(name: str | None = None, *, version: int = 1) -> Callable[[type[T]], type[T]]:
    """Class decorator naming a payload type's CloudEvents ``type`` and version.

    >>> from pydantic import BaseModel
    >>> @event_type("com.example.order.placed", version=2)
    ... class OrderPlaced(BaseModel):
    ...     order_id: str
    >>> payload_info(OrderPlaced)
    PayloadInfo(name='com.example.order.placed', version=2)
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError("event type name must be a non-empty string")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigurationError(f"event version must be an integer >= 1, got {version!r}")

    def decorate(cls: type[T]) -> type[T]:
        cls.__event_type__ = name or cls.__name__  # type: ignore[attr-defined]
        cls.__event_version__ = version  # type: ignore[attr-defined]
        _cache.pop(cls, None)
        return cls

    return decorate


def payload_info(payload_or_type: Any) -> PayloadInfo:
    """The :class:`PayloadInfo` of a payload instance or type.

    Raises ConfigurationError for values that carry no type (dicts, lists,
    scalars): publish those with an explicit ``type=``.
    """
    cls = payload_or_type if isinstance(payload_or_type, type) else type(payload_or_type)
    info = _cache.get(cls)
    if info is not None:
        return info
    if cls.__module__ == "builtins":  # dict, list, str, bytes, int, None, set, ...
        raise ConfigurationError(
            f"a {cls.__name__} payload has no event type; pass type='...' explicitly"
        )
    name = cls.__dict__.get("__event_type__", cls.__name__)
    version = cls.__dict__.get("__event_version__", 1)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"{cls.__qualname__}.__event_type__ must be a non-empty string, got {name!r}"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigurationError(
            f"{cls.__qualname__}.__event_version__ must be an integer >= 1, got {version!r}"
        )
    info = PayloadInfo(name, version)
    _cache[cls] = info
    return info


def is_pydantic_model(cls: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)


def to_jsonable(value: Any) -> Any:
    """``enc_hook`` for msgspec: turn objects msgspec does not know into JSON values."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode {value.__class__.__name__} as event data")


def json_hook(value: Any) -> Any:
    """``enc_hook`` for msgspec's JSON encoders: :func:`to_jsonable`, but a pydantic model
    is serialized to JSON by pydantic itself and spliced in as it is (one pass instead of
    model -> dict -> JSON), unless its class overrides ``model_dump``, which then decides."""
    pydantic = sys.modules.get("pydantic")
    if (
        pydantic is not None
        and isinstance(value, pydantic.BaseModel)
        and type(value).model_dump is pydantic.BaseModel.model_dump
    ):
        return msgspec.Raw(value.__pydantic_serializer__.to_json(value))
    return to_jsonable(value)


def decode_payload(data: Any, cls: type[T]) -> T:
    """Validate decoded event ``data`` into ``cls``; raises SchemaError on mismatch."""
    try:
        if is_pydantic_model(cls):
            return cls.model_validate(data)  # type: ignore[attr-defined, no-any-return]
        if not isinstance(cls, type):  # a typing form such as list[int]
            return msgspec.convert(data, type=cls)
        if isinstance(data, cls):
            return data
        if dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct):
            return msgspec.convert(data, type=cls, strict=False)
        return msgspec.convert(data, type=cls)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        # pydantic.ValidationError is a ValueError subclass
        raise SchemaError(f"event data does not match {cls.__name__}: {exc}") from exc
