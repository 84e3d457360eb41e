"""Contract tests against the schema registry, for a user's pytest suite.

::

    from tidings.testing.contracts import assert_consumers_accept, assert_producers_conform
    from myservice import app, upcasters

    async def test_our_handlers_read_every_registered_version():
        await assert_consumers_accept(app, registry, upcasters=upcasters)

    async def test_what_we_publish_is_readable_by_the_registry_s_consumers():
        await assert_producers_conform(app, registry)

A **consumer** passes when its payload class can read every registered
version of its event type: an older version (below the class's
``__event_version__``) either reads as it is, or has a complete chain of
upcasters up to the class's version; the class's own and newer versions must
read as they are (the compatibility rules of :func:`tidings.schemas.check`).
Registry version *n* is taken as payload version *n*: register each version
once, in order (``tidings schema register`` does).

A **producer** passes when every payload class it routes is registered, or is
readable by the latest registered version (what the registry's consumers hold).

Both raise :class:`AssertionError` listing every problem, naming the type, the
version, and the fields.
"""

from __future__ import annotations

from typing import Any

from tidings.payload import payload_info
from tidings.schemas import (
    Compatibility,
    SchemaRegistry,
    Upcasters,
    check,
    registry_for,
    schema_for,
)

__all__ = ["assert_consumers_accept", "assert_producers_conform"]


def _registry(app: Any, registry: SchemaRegistry | None) -> SchemaRegistry:
    found = registry if registry is not None else registry_for(app.broker)
    if found is None:
        raise AssertionError(
            f"no schema registry for {app.name!r}: pass one, or set TIDINGS_SCHEMAS / "
            "TIDINGS_SCHEMA_REGISTRY"
        )
    return found


def _fields(breaking: list[Any]) -> str:
    return "; ".join(str(b) for b in breaking)


async def assert_consumers_accept(
    app: Any, registry: SchemaRegistry | None = None, *, upcasters: Upcasters | None = None
) -> None:
    """Every handler of ``app`` reads every registered version of the types it takes."""
    registry = _registry(app, registry)
    upcasters = upcasters or Upcasters()
    problems: list[str] = []
    for spec in app._specs.values():
        for event_type, cls in sorted((spec.accepts or {}).items()):
            reader = schema_for(cls)
            wanted = payload_info(cls).version
            for version in await registry.versions(event_type):
                writer = await registry.get(event_type, version)
                breaking = check(reader, [writer], Compatibility.BACKWARD)
                if not breaking:
                    continue
                if version < wanted and upcasters.can_lift(event_type, version, wanted):
                    continue  # lifted to the handler's version before it runs
                missing = "" if version >= wanted else " and no upcaster chain to it"
                problems.append(
                    f"{spec.where} ({cls.__qualname__}, version {wanted}) cannot read "
                    f"{event_type} v{version}{missing}: {_fields(breaking)}"
                )
    if problems:
        raise AssertionError("consumer contracts broken:\n- " + "\n- ".join(problems))


async def assert_producers_conform(app: Any, registry: SchemaRegistry | None = None) -> None:
    """Every payload class ``app`` routes is registered, or readable by the latest version."""
    registry = _registry(app, registry)
    problems: list[str] = []
    for cls in app.router.payload_types():
        event_type = payload_info(cls).name
        schema = schema_for(cls)
        if not await registry.versions(event_type):
            problems.append(f"{event_type} ({cls.__qualname__}) has no registered schema")
            continue
        if await registry.find(event_type, schema) is not None:
            continue
        latest = await registry.get(event_type)
        breaking = check(latest, [schema], Compatibility.BACKWARD)
        if breaking:
            problems.append(
                f"{event_type} ({cls.__qualname__}) is not readable by the latest registered "
                f"version v{latest.get('x-tidings-version')}: {_fields(breaking)}"
            )
    if problems:
        raise AssertionError("producer contracts broken:\n- " + "\n- ".join(problems))
