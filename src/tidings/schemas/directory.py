"""A schema registry in a directory of JSON files (``TIDINGS_SCHEMAS=path`` for the CLI).

Layout, one directory per event type (its name percent-encoded, so any type
name is a safe file name)::

    schemas/
      com.example.order.placed/
        v1.json          the schema document of version 1
        v2.json
        mode.json        {"mode": "FULL"}, when a mode was set

Writes are atomic: a version is written to a temporary file, flushed, then
hard-linked to its name, which fails if another process took that version
first (the registry then checks again); ``mode.json`` is replaced with
``os.replace``. The directory can live in version control next to the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

from tidings.errors import ConfigurationError, SchemaError
from tidings.schemas.registry import StoredRegistry

__all__ = ["DirectoryStore", "directory_registry"]

_MODE_FILE = "mode.json"


def directory_registry(path: str | os.PathLike[str]) -> StoredRegistry:
    """A registry kept in the directory ``path`` (created on the first write)."""
    return StoredRegistry(DirectoryStore(path))


class DirectoryStore:
    """A :class:`~tidings.schemas.registry.SchemaStore` in a directory of JSON files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigurationError(f"schema registry {self.path} is not a directory")

    def __repr__(self) -> str:
        return f"<DirectoryStore {self.path}>"

    async def stored_schemas(self, event_type: str) -> list[str]:
        return await asyncio.to_thread(self._read_all, event_type)

    async def add_schema(self, event_type: str, version: int, text: str) -> bool:
        return await asyncio.to_thread(self._add, event_type, version, text)

    async def schema_types(self) -> list[str]:
        return await asyncio.to_thread(self._types)

    async def schema_mode(self, event_type: str) -> str | None:
        return await asyncio.to_thread(self._read_mode, event_type)

    async def set_schema_mode(self, event_type: str, mode: str) -> None:
        text = json.dumps({"mode": mode}) + "\n"
        await asyncio.to_thread(self._replace, self._folder(event_type) / _MODE_FILE, text)

    # -- files -----------------------------------------------------------------

    def _folder(self, event_type: str) -> Path:
        if not event_type:
            raise ConfigurationError("an event type name must be a non-empty string")
        name = quote(event_type, safe="-._~@+=,")
        if name.strip("."):
            return self.path / name
        return self.path / name.replace(".", "%2E")  # never "." or ".."

    def _read_all(self, event_type: str) -> list[str]:
        folder = self._folder(event_type)
        texts: list[str] = []
        while True:
            try:
                texts.append((folder / f"v{len(texts) + 1}.json").read_text("utf-8"))
            except FileNotFoundError:
                return texts
            except OSError as exc:
                raise SchemaError(f"cannot read the schema registry {self.path}: {exc}") from exc

    def _types(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(
            unquote(folder.name) for folder in self.path.iterdir() if (folder / "v1.json").is_file()
        )

    def _read_mode(self, event_type: str) -> str | None:
        try:
            found = json.loads((self._folder(event_type) / _MODE_FILE).read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SchemaError(f"cannot read the mode of {event_type!r}: {exc}") from exc
        mode = found.get("mode") if isinstance(found, dict) else None
        if not isinstance(mode, str):
            raise SchemaError(f"{self._folder(event_type) / _MODE_FILE} holds no mode")
        return mode

    def _add(self, event_type: str, version: int, text: str) -> bool:
        folder = self._folder(event_type)
        target = folder / f"v{version}.json"
        temporary = self._written(folder, text)
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise SchemaError(f"cannot write {target}: {exc}") from exc
        finally:
            temporary.unlink()
        _sync_directory(folder)
        return True

    def _replace(self, target: Path, text: str) -> None:
        temporary = self._written(target.parent, text)
        try:
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink()
            raise SchemaError(f"cannot write {target}: {exc}") from exc
        _sync_directory(target.parent)

    def _written(self, folder: Path, text: str) -> Path:
        """A new temporary file in ``folder`` holding ``text``, flushed to disk."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise SchemaError(f"cannot write to the schema registry {folder}: {exc}") from exc
        return Path(name)


def _sync_directory(folder: Path) -> None:
    """Make a new or renamed entry of ``folder`` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
