"""Schemas an App keeps to: validation on publish and on consume, and upcasting.

Every App has a :class:`Schemas` policy (``App(schemas=...)``; on by default).
When the App connects, the policy finds the registry (:func:`registry_for`)
and reads which event types have schemas. Nothing is installed unless some
type has one, or upcasters are given: an App without schemas pays nothing.

- **On publish**, an event of a registered type gets ``dataschema`` naming the
  registry version it conforms to (the version registered for its payload
  class; otherwise the latest, which its data must then validate against),
  and data that does not validate raises :class:`SchemaViolation` naming each
  field. Nothing is sent.
- **On consume**, an event whose ``dataschema`` names a registered version is
  validated against it first; one that fails goes straight to the dead-letter
  topic (a :class:`~tidings.errors.SchemaError` is never retried), the report
  in the DLQ record's error.
- **Upcasting**: where the handler's payload class declares a newer version of
  the type than the event's ``schemaversion``, and :class:`Upcasters` has steps
  for that type, the data is lifted before the handler sees it (replays too).

Types registered after the App connected count from its next start.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec

from tidings.event import Event
from tidings.middleware import Handle, Outgoing, PublishFn
from tidings.payload import is_pydantic_model, payload_info, to_jsonable
from tidings.schemas._generate import schema_for
from tidings.schemas.directory import DirectoryStore
from tidings.schemas.registry import SchemaRegistry, SchemaStorage, StoredRegistry, version_of
from tidings.schemas.upcast import Upcasters
from tidings.schemas.validation import SchemaViolation, compiled, validate

if TYPE_CHECKING:
    from tidings.context import Context

__all__ = [
    "REGISTRY_ENVVAR",
    "REGISTRY_URL_ENVVAR",
    "SchemaViolation",
    "Schemas",
    "app_payload_types",
    "registry_for",
]

#: A registry directory of JSON files (for brokers that keep no schemas).
REGISTRY_ENVVAR = "TIDINGS_SCHEMAS"
#: A Confluent-compatible Schema Registry's base URL.
REGISTRY_URL_ENVVAR = "TIDINGS_SCHEMA_REGISTRY"

_URN = "urn:tidings:schema:"


def registry_for(broker: object) -> SchemaRegistry | None:
    """The registry an App on ``broker`` uses: ``TIDINGS_SCHEMA_REGISTRY`` (a Confluent
    Schema Registry), else ``TIDINGS_SCHEMAS`` (a directory), else the broker's own
    storage (the embedded broker's file, memory://'s process); None if there is none."""
    url = os.environ.get(REGISTRY_URL_ENVVAR)
    if url:
        from tidings.schemas.confluent import ConfluentStore

        return StoredRegistry(ConfluentStore(url))
    path = os.environ.get(REGISTRY_ENVVAR)
    if path:
        return StoredRegistry(DirectoryStore(Path(path)))
    if isinstance(broker, SchemaStorage):
        return StoredRegistry(broker.schema_store())
    return None


def app_payload_types(app: Any) -> list[type]:
    """Each payload class ``app`` routes or its handlers take, in a stable order."""
    classes: dict[type, None] = dict.fromkeys(app.router.payload_types())
    for spec in app._specs.values():
        classes.update(dict.fromkeys((spec.accepts or {}).values()))
    return sorted(classes, key=lambda cls: (*payload_info(cls), cls.__qualname__))


def parse_dataschema(uri: str | None, event_type: str) -> int | None:
    """The registry version a tidings ``dataschema`` URI names for ``event_type``, if it does."""
    if uri is None or not uri.startswith(_URN):
        return None
    name, _, version = uri[len(_URN) :].rpartition(":")
    if unquote(name) != event_type or not version.isdigit():
        return None
    return int(version)


@dataclass
class Schemas:
    """What an App checks against the schema registry (``App(schemas=Schemas(...))``).

    ``registry``: the registry (default: :func:`registry_for` the App's broker);
    ``validate_publish`` / ``validate_consume``: check event data on the way out /
    in (both on); ``upcasters``: lifts of old versions for handlers of newer ones;
    ``register``: register the App's payload schemas when it connects, refusing an
    incompatible one (off: registering is a deliberate step, ``tidings schema register``).
    """

    registry: SchemaRegistry | None = None
    validate_publish: bool = True
    validate_consume: bool = True
    upcasters: Upcasters = field(default_factory=Upcasters)
    register: bool = False

    async def attach(self, app: Any, broker: object) -> Enforcement | None:
        """Read the registry for ``app`` (on ``broker``); None if there is nothing to do."""
        registry = self.registry if self.registry is not None else registry_for(broker)
        if registry is not None and self.register:
            for cls in app_payload_types(app):
                await registry.register(payload_info(cls).name, schema_for(cls))
        documents: dict[str, dict[int, dict[str, Any]]] = {}
        if registry is not None and (self.validate_publish or self.validate_consume):
            for name in await registry.types():
                documents[name] = {
                    v: await registry.get(name, v) for v in await registry.versions(name)
                }
        if not documents and not len(self.upcasters):
            return None
        return Enforcement(self, documents, _declared_versions(app))


def _declared_versions(app: Any) -> dict[str, dict[str, int]]:
    """Subscription name -> {event type: the version its handler's payload class declares}."""
    out: dict[str, dict[str, int]] = {}
    for name, spec in app._specs.items():
        accepts: Mapping[str, type] = spec.accepts or {}
        out[name] = {t: payload_info(cls).version for t, cls in accepts.items()}
    return out


class Enforcement:
    """The middleware of one connected App: built by :meth:`Schemas.attach`."""

    def __init__(
        self,
        policy: Schemas,
        documents: dict[str, dict[int, dict[str, Any]]],
        declared: dict[str, dict[str, int]],
    ) -> None:
        self.policy = policy
        self.documents = documents
        self.declared = declared
        self.upcasters = policy.upcasters
        #: payload class -> (registry version it equals, or None; whether to validate).
        self._classes: dict[type, tuple[int, bool]] = {}

    @property
    def checks_publish(self) -> bool:
        return self.policy.validate_publish and bool(self.documents)

    @property
    def checks_consume(self) -> bool:
        consume = self.policy.validate_consume and bool(self.documents)
        return consume or bool(len(self.upcasters))

    # -- publishing --------------------------------------------------------------------------

    def publish(self, next_publish: PublishFn) -> PublishFn:
        """Publish middleware: stamp ``dataschema``, validate, refuse what does not match."""
        documents = self.documents

        async def publish(outgoing: Outgoing) -> None:
            events = outgoing.events
            if any(event.type in documents for event in events):
                checked = [self._checked(event) for event in events]
                outgoing = Outgoing(outgoing.topic, checked, outgoing.deliver_at)
            await next_publish(outgoing)

        return publish

    def _checked(self, event: Event) -> Event:
        versions = self.documents.get(event.type)
        if versions is None:
            return event
        data = event.data
        cls = type(data)
        typed = (
            is_pydantic_model(cls)
            or isinstance(data, msgspec.Struct)
            or dataclasses.is_dataclass(data)
        )
        version = parse_dataschema(event.dataschema, event.type)
        must_validate = True
        if version is None and typed:
            version, must_validate = self._class_version(cls, event.type, versions)
        if version is None or version not in versions:
            version = max(versions)
        if must_validate:
            validate(
                compiled(versions[version]),
                msgspec.to_builtins(data, enc_hook=to_jsonable) if typed else data,
                f"event {event.id} ({event.type}, schema version {version})",
            )
        uri = versions[version].get("$id")
        if isinstance(uri, str) and uri != event.dataschema:
            return event.replace(dataschema=uri)
        return event

    def _class_version(
        self, cls: type, event_type: str, versions: Mapping[int, Mapping[str, Any]]
    ) -> tuple[int | None, bool]:
        """The registry version equal to ``cls``'s schema (then its data needs no check)."""
        found = self._classes.get(cls)
        if found is None:
            match = version_of([versions[v] for v in sorted(versions)], schema_for(cls))
            found = (match, False) if match is not None else (max(versions), True)
            self._classes[cls] = found
        return found

    # -- consuming ---------------------------------------------------------------------------

    def handler(self, next_handle: Handle) -> Handle:
        """Handler middleware: validate against the declared schema, then upcast."""

        async def handle(ctx: Context) -> list[Event]:
            declared = self.declared.get(ctx.subscription, {})
            if ctx._events is not None:
                ctx._events = [self._received(e, declared) for e in ctx._events]
            ctx.event = self._received(ctx.event, declared)
            return await next_handle(ctx)

        return handle

    def _received(self, event: Event, declared: Mapping[str, int]) -> Event:
        if self.policy.validate_consume:
            versions = self.documents.get(event.type)
            version = parse_dataschema(event.dataschema, event.type)
            if versions is not None and version is not None and version in versions:
                validate(
                    compiled(versions[version]),
                    event.data,
                    f"event {event.id} ({event.type}, declared schema version {version})",
                )
        wanted = declared.get(event.type)
        have = event.schemaversion or 1
        if (
            wanted is not None
            and have < wanted
            and isinstance(event.data, dict)
            and self.upcasters.knows(event.type)
        ):
            lifted = self.upcasters.lift(event.type, event.data, have, wanted)
            return event.replace(data=lifted, schemaversion=wanted, dataschema=None)
        return event
