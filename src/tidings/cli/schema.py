"""``tidings schema``: the schema registry: list, show, register an App's schemas, check in CI.

The registry is the directory ``--registry`` (or ``TIDINGS_SCHEMAS``) names
when given, else the Confluent Schema Registry ``TIDINGS_SCHEMA_REGISTRY``
names, else the broker's own storage (the embedded broker's database file); a
broker that keeps no schemas needs one of those.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tidings.app import App
from tidings.brokers import from_url
from tidings.brokers.memory import MemoryBroker
from tidings.cli._broker import connected
from tidings.cli._errors import EXIT_USAGE, CommandError
from tidings.cli._options import BrokerOption, JsonLinesOption
from tidings.cli._output import cells, echo, json_line, note, stdout
from tidings.cli._target import load_app
from tidings.errors import ConfigurationError
from tidings.payload import payload_info
from tidings.schemas import (
    REGISTRY_ENVVAR,
    REGISTRY_URL_ENVVAR,
    Breaking,
    Compatibility,
    DirectoryStore,
    SchemaStorage,
    StoredRegistry,
    app_payload_types,
    check,
    parse_mode,
    schema_for,
)
from tidings.schemas.confluent import ConfluentStore
from tidings.settings import default_broker_url

__all__ = ["REGISTRY_ENVVAR", "schema"]


schema = typer.Typer(
    name="schema",
    help="The schema registry: list, show, register and check payload schemas.",
    no_args_is_help=True,
    add_completion=False,
)

RegistryOption = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        metavar="PATH",
        envvar=REGISTRY_ENVVAR,
        show_envvar=True,
        help="A registry directory of JSON files (default: the broker's own storage).",
    ),
]
TargetArgument = Annotated[
    str, typer.Argument(metavar="MODULE:APP", help="The App, e.g. shop.orders:app.")
]
FactoryOption = Annotated[
    bool, typer.Option("--factory", help="APP is a function that returns the App.")
]
TypeArgument = Annotated[str, typer.Argument(metavar="TYPE", help="The event type.")]


@schema.command("list")
def list_schemas(
    as_json: JsonLinesOption = False,
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """List event types with registered schemas: versions and compatibility mode."""
    found = asyncio.run(_list(broker, registry))
    if as_json:
        for name, versions, mode in found:
            echo(json_line({"type": name, "versions": versions, "mode": mode}))
        return
    if not found:
        note("no schemas registered yet")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("type", "latest", "versions", "mode"):
        table.add_column(column, justify="right" if column == "latest" else "left")
    for name, versions, mode in found:
        table.add_row(*cells(name, versions[-1], ", ".join(map(str, versions)), mode))
    stdout().print(table)


async def _list(broker: str | None, path: Path | None) -> list[tuple[str, list[int], str]]:
    async with _registry(broker, path) as registry:
        return [
            (name, await registry.versions(name), (await registry.mode(name)).value)
            for name in await registry.types()
        ]


@schema.command()
def show(
    event_type: TypeArgument,
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """Print a registered schema as JSON."""
    document = asyncio.run(_get(broker, registry, event_type, version))
    echo(json.dumps(document, indent=2, ensure_ascii=False))


async def _get(
    broker: str | None, path: Path | None, event_type: str, version: int | None
) -> dict[str, Any]:
    async with _registry(broker, path) as registry:
        return await registry.get(event_type, version)


@schema.command()
def register(
    target: TargetArgument,
    factory: FactoryOption = False,
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """Register the schema of every payload type the App routes or handles.

    Refuses (exit 1) when one breaks a previous version under its type's mode,
    listing the breaking fields; nothing is registered then.
    """
    schemas = _app_schemas(load_app(target, factory))
    asyncio.run(_register(broker, registry, schemas, dry_run=False))


@schema.command("check")
def check_app(
    target: TargetArgument,
    factory: FactoryOption = False,
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """What `schema register` would do, registering nothing: exit 1 on a breaking change.

    The command for CI: it names each breaking field and the rule it breaks.
    """
    schemas = _app_schemas(load_app(target, factory))
    asyncio.run(_register(broker, registry, schemas, dry_run=True))


async def _register(
    broker: str | None,
    path: Path | None,
    schemas: list[tuple[str, dict[str, Any]]],
    *,
    dry_run: bool,
) -> None:
    async with _registry(broker, path, create=not dry_run) as registry:
        refused: list[tuple[str, list[Breaking]]] = []
        plans: list[str] = []
        for name, document in schemas:
            breaking = await registry.check(name, document)
            if breaking:
                refused.append((name, breaking))
            else:
                plans.append(f"{name}: {await _plan(registry, name, document)}")
        if refused:
            for name, breaking in refused:
                mode = await registry.mode(name)
                echo(f"{name}: breaks {mode} compatibility")
                for finding in breaking:
                    echo(f"  - {finding}")
            fields = ", ".join(f"{name}: {_fields(breaking)}" for name, breaking in refused)
            verb = "refused" if not dry_run else "would be refused"
            raise CommandError(f"{len(refused)} schema(s) {verb} ({fields})")
        if dry_run:
            for line in plans:
                echo(line)
            return
        for name, document in schemas:
            known = await registry.find(name, document)
            version = await registry.register(name, document)
            state = "registered" if known is None else "unchanged"
            echo(f"{name}: v{version} {state}")


async def _plan(registry: StoredRegistry, name: str, document: dict[str, Any]) -> str:
    found = await registry.find(name, document)
    if found is not None:
        return f"v{found} unchanged"
    return f"compatible, would be v{len(await registry.versions(name)) + 1}"


def _fields(breaking: list[Breaking]) -> str:
    return ", ".join(dict.fromkeys(finding.path for finding in breaking))


@schema.command()
def diff(
    event_type: TypeArgument,
    old: Annotated[int, typer.Argument(metavar="V1", min=1, help="The older version.")],
    new: Annotated[int, typer.Argument(metavar="V2", min=1, help="The newer version.")],
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """The breaking changes from V1 to V2, each direction (backward, forward)."""
    before, after = asyncio.run(_pair(broker, registry, event_type, old, new))
    for mode, who in (
        (Compatibility.BACKWARD, f"consumers on v{new} reading v{old} data"),
        (Compatibility.FORWARD, f"consumers on v{old} reading v{new} data"),
    ):
        found = check(after, [before], mode)
        echo(f"{mode.value.lower()} ({who}): {'breaks' if found else 'compatible'}")
        for finding in found:
            echo(f"  - {finding}")


async def _pair(
    broker: str | None, path: Path | None, event_type: str, old: int, new: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    async with _registry(broker, path) as registry:
        return await registry.get(event_type, old), await registry.get(event_type, new)


@schema.command()
def compat(
    event_type: TypeArgument,
    mode: Annotated[
        str | None,
        typer.Argument(
            metavar="[MODE]",
            help="BACKWARD, FORWARD, FULL (each also _TRANSITIVE) or NONE; "
            "without it, show the current mode.",
        ),
    ] = None,
    broker: BrokerOption = None,
    registry: RegistryOption = None,
) -> None:
    """Show or set the compatibility mode new versions of TYPE are checked with."""
    chosen = None
    if mode is not None:
        try:
            chosen = parse_mode(mode)
        except ValueError as exc:  # ConfigurationError is a ValueError too
            raise CommandError(str(exc), EXIT_USAGE) from None
    echo(f"{event_type}: {asyncio.run(_compat(broker, registry, event_type, chosen))}")


async def _compat(
    broker: str | None, path: Path | None, event_type: str, mode: Compatibility | None
) -> str:
    async with _registry(broker, path, create=mode is not None) as registry:
        if mode is not None:
            await registry.set_mode(event_type, mode)
        return (await registry.mode(event_type)).value


@asynccontextmanager
async def _registry(
    broker: str | None, path: Path | None, *, create: bool = False
) -> AsyncIterator[StoredRegistry]:
    if path is not None:
        yield StoredRegistry(DirectoryStore(path))
        return
    url = os.environ.get(REGISTRY_URL_ENVVAR)
    if url:
        store = ConfluentStore(url)
        try:
            yield StoredRegistry(store)
        finally:
            await store.aclose()
        return
    _refuse_without_storage(broker)
    async with connected(broker, create=create) as client:
        assert isinstance(client, SchemaStorage)
        yield StoredRegistry(client.schema_store())


def _refuse_without_storage(url: str | None) -> None:
    """Say so before connecting to a broker that keeps no schemas (Kafka, NATS, ...)."""
    try:
        candidate = from_url(url or default_broker_url())
    except ConfigurationError:
        return  # connected() reports it, as every command does
    # memory:// keeps them, but only for the process: this command's.
    if not isinstance(candidate, SchemaStorage) or isinstance(candidate, MemoryBroker):
        raise CommandError(
            f"{type(candidate).__name__} keeps no schemas here: pass --registry PATH "
            f"(or set {REGISTRY_ENVVAR}) for a registry directory, or set "
            f"{REGISTRY_URL_ENVVAR}=URL for a Confluent Schema Registry",
            EXIT_USAGE,
        )


def _app_schemas(app: App) -> list[tuple[str, dict[str, Any]]]:
    """(event type, schema) of each payload class the App routes or its handlers take."""
    schemas = [(payload_info(cls).name, schema_for(cls)) for cls in app_payload_types(app)]
    if not schemas:
        raise CommandError("the App routes and handles no payload types: nothing to register")
    return schemas
