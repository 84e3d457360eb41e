"""The schema registry: one test class, run against every backend."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest

from _confluent_fake import serving
from tidings.brokers.sqlite import SqliteBroker
from tidings.brokers.sqlite._schema import SCHEMA_VERSION
from tidings.errors import ConfigurationError, SchemaError
from tidings.schemas import (
    Compatibility,
    DirectoryStore,
    Rule,
    SchemaCompatibilityError,
    SchemaStorage,
    StoredRegistry,
    dataschema_uri,
    memory_registry,
)
from tidings.schemas.confluent import ConfluentStore

TYPE = "com.example.order.placed"
V1: dict[str, Any] = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}},
    "required": ["order_id", "total"],
}
#: compatible with V1 both ways: an optional field with a default
V2: dict[str, Any] = {
    **V1,
    "properties": {**V1["properties"], "currency": {"type": "string", "default": "EUR"}},
}
#: breaks BACKWARD: a required field without a default, total narrowed to integer
V3: dict[str, Any] = {
    **V2,
    "properties": {**V2["properties"], "total": {"type": "integer"}, "region": {"type": "string"}},
    "required": ["order_id", "total", "region"],
}


class RegistryContract:
    """What every backend must do; a subclass says how to open its registry."""

    persistent: ClassVar[bool] = True

    async def open(self) -> StoredRegistry:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    async def _stack(self, tmp_path: Path) -> AsyncIterator[None]:
        self.tmp_path = tmp_path
        async with AsyncExitStack() as self.stack:
            yield

    async def test_versions_count_from_one_and_are_stamped(self) -> None:
        registry = await self.open()
        assert await registry.versions(TYPE) == []
        assert await registry.register(TYPE, V1) == 1
        assert await registry.register(TYPE, V2) == 2
        assert await registry.versions(TYPE) == [1, 2]
        assert await registry.types() == [TYPE]
        latest = await registry.get(TYPE)
        assert latest["x-tidings-version"] == 2
        assert latest["$id"] == dataschema_uri(TYPE, 2)
        assert latest["properties"] == V2["properties"]
        assert (await registry.get(TYPE, 1))["properties"] == V1["properties"]

    async def test_registering_the_same_schema_again_returns_its_version(self) -> None:
        registry = await self.open()
        assert await registry.register(TYPE, V1) == 1
        assert await registry.register(TYPE, V2) == 2
        assert await registry.register(TYPE, V2) == 2
        assert await registry.register(TYPE, V1) == 1  # an older one, too
        assert await registry.register(TYPE, await registry.get(TYPE, 2)) == 2
        assert await registry.versions(TYPE) == [1, 2]

    async def test_an_incompatible_schema_is_refused_naming_the_fields(self) -> None:
        registry = await self.open()
        await registry.register(TYPE, V1)
        await registry.register(TYPE, V2)
        with pytest.raises(SchemaCompatibilityError) as caught:
            await registry.register(TYPE, V3)
        found = {(b.path, b.rule, b.version) for b in caught.value.breaking}
        assert found == {
            ("total", Rule.TYPE_NARROWED, 2),
            ("region", Rule.REQUIRED_FIELD_ADDED, 2),
        }
        assert "region" in str(caught.value) and TYPE in str(caught.value)
        assert await registry.versions(TYPE) == [1, 2]
        assert {b.path for b in await registry.check(TYPE, V3)} == {"total", "region"}
        assert await registry.check(TYPE, V2) == []  # registered already

    async def test_the_mode_decides_what_is_refused(self) -> None:
        registry = await self.open()
        assert await registry.mode(TYPE) is Compatibility.BACKWARD
        await registry.register(TYPE, V1)
        # FORWARD: old consumers read new data; V3 only narrows and adds, fine for them
        assert await registry.register(TYPE, V3, mode="forward") == 2
        await registry.set_mode(TYPE, "NONE")
        assert await registry.mode(TYPE) is Compatibility.NONE
        assert await registry.register(TYPE, {"type": "string"}) == 3
        await registry.set_mode(TYPE, Compatibility.FULL_TRANSITIVE)
        with pytest.raises(SchemaCompatibilityError) as caught:
            await registry.register(TYPE, V1)  # registered as v1: idempotent, no check
            await registry.register(TYPE, V2)
        assert caught.value.mode is Compatibility.FULL_TRANSITIVE
        # transitive: checked against v2 as well as the latest (v1 is compatible)
        assert {b.version for b in caught.value.breaking} == {2, 3}
        with pytest.raises(ConfigurationError, match="BACKWARD_TRANSITIVE"):
            await registry.set_mode(TYPE, "sideways")

    async def test_unknown_types_and_versions_are_errors(self) -> None:
        registry = await self.open()
        with pytest.raises(SchemaError, match="no schema registered"):
            await registry.get(TYPE)
        await registry.register(TYPE, V1)
        with pytest.raises(SchemaError, match="no schema version 2"):
            await registry.get(TYPE, 2)

    async def test_type_names_are_kept_as_they_are(self) -> None:
        registry = await self.open()
        names = ["a/b:c", "Weird Name %20", "ordnung.bestellt", "..", "."]
        for name in names:
            await registry.register(name, V1)
        assert await registry.types() == sorted(names)

    async def test_concurrent_registrations_get_distinct_versions(self) -> None:
        registry = await self.open()
        await registry.set_mode(TYPE, "NONE")
        schemas = [{"type": "object", "title": f"s{n}"} for n in range(5)]
        versions = await asyncio.gather(*(registry.register(TYPE, s) for s in schemas))
        assert sorted(versions) == [1, 2, 3, 4, 5]

    async def test_what_is_registered_persists(self) -> None:
        registry = await self.open()
        await registry.register(TYPE, V1)
        await registry.register(TYPE, V2)
        await registry.set_mode(TYPE, "FULL")
        again = await self.open()
        assert await again.versions(TYPE) == [1, 2]
        assert await again.mode(TYPE) is Compatibility.FULL
        assert await again.register(TYPE, V2) == 2
        with pytest.raises(SchemaCompatibilityError):
            await again.register(TYPE, V3)


class TestMemoryRegistry(RegistryContract):
    persistent = False
    test_what_is_registered_persists = None  # type: ignore[assignment]  # kept in memory

    async def open(self) -> StoredRegistry:
        return memory_registry()


class TestDirectoryRegistry(RegistryContract):
    async def open(self) -> StoredRegistry:
        return StoredRegistry(DirectoryStore(self.tmp_path / "schemas"))


class TestSqliteRegistry(RegistryContract):
    async def open(self) -> StoredRegistry:
        broker = SqliteBroker(str(self.tmp_path / "t.db"))
        assert isinstance(broker, SchemaStorage)
        await broker.connect()
        self.stack.push_async_callback(broker.close)
        return StoredRegistry(broker.schema_store())


class TestConfluentRegistry(RegistryContract):
    """Against the in-test fake of Confluent's REST endpoints (tests/_confluent_fake.py)."""

    async def open(self) -> StoredRegistry:
        if not hasattr(self, "url"):
            fake, self.url = await self.stack.enter_async_context(serving())
            self.fake = fake
        store = ConfluentStore(self.url)
        self.stack.push_async_callback(store.aclose)
        return StoredRegistry(store)

    async def test_types_are_json_subjects_named_after_them(self) -> None:
        registry = await self.open()
        await registry.register(TYPE, V1)
        await registry.set_mode(TYPE, "FULL")
        assert sorted(self.fake.subjects) == [f"{TYPE}-value"]
        assert self.fake.config == {f"{TYPE}-value": "FULL"}
        assert await registry.mode(TYPE) == Compatibility.FULL


async def test_the_directory_holds_one_json_file_per_version_and_the_mode(tmp_path: Path) -> None:
    registry = StoredRegistry(DirectoryStore(tmp_path))
    await registry.register("a/b", V1)
    await registry.register("a/b", V2)
    await registry.set_mode("a/b", "FULL")
    folder = tmp_path / "a%2Fb"
    assert sorted(p.name for p in folder.iterdir()) == ["mode.json", "v1.json", "v2.json"]
    assert json.loads((folder / "v2.json").read_text())["x-tidings-version"] == 2
    assert json.loads((folder / "mode.json").read_text()) == {"mode": "FULL"}


def test_a_file_is_not_a_registry_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        DirectoryStore(tmp_path / "file")


async def test_an_older_database_gains_the_schema_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    broker = SqliteBroker(str(path))
    await broker.connect()
    await broker.close()
    with sqlite3.connect(path) as conn:  # back to schema version 2
        conn.execute("DROP TABLE schemas")
        conn.execute("DROP TABLE schema_modes")
        conn.execute("DROP TABLE webhooks")  # version 4
        conn.execute("UPDATE tidings_meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()
    broker = SqliteBroker(str(path))
    await broker.connect()
    try:
        assert await StoredRegistry(broker.schema_store()).register(TYPE, V1) == 1
    finally:
        await broker.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM tidings_meta WHERE key = 'schema_version'")
        assert version.fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
