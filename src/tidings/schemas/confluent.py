"""A :class:`~tidings.schemas.registry.SchemaStore` on a Confluent-compatible Schema Registry.

Set ``TIDINGS_SCHEMA_REGISTRY=http://host:8081`` (credentials as
``http://user:password@host``). Each event type is the JSON Schema subject
``<type>-value``; the REST endpoints used are the documented ones:

- ``GET /subjects``: the subjects (types are those ending in ``-value``);
- ``GET /subjects/{subject}/versions`` and ``.../versions/{n}``: versions and
  each one's ``schema`` text;
- ``POST /subjects/{subject}/versions`` with ``{"schemaType": "JSON", "schema": ...}``;
- ``GET /config/{subject}`` (``compatibilityLevel``) and ``PUT /config/{subject}``
  (``{"compatibility": ...}``).

tidings checks compatibility itself before it registers (with the same mode
names), so the registry's own check, if on, agrees or refuses too. Confluent
numbers versions itself: a registration racing another for the same version
comes back under a different number, and is then reported as lost (``False``),
as the other stores do. Tested against an in-test HTTP fake of these endpoints,
not against Confluent's server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tidings.errors import BrokerUnavailable, ConfigurationError, SchemaError

__all__ = ["ConfluentStore"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_SUFFIX = "-value"


class ConfluentStore:
    """Schemas and modes kept by a Confluent Schema Registry at ``url``."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "a Confluent Schema Registry needs httpx: pip install 'tidings[schemas]'"
            ) from None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"not an http(s) Schema Registry URL: {url!r}")
        auth = None
        if parts.username is not None:
            auth = (parts.username, parts.password or "")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.url = base
        self._client = httpx.AsyncClient(
            base_url=base,
            auth=auth,
            timeout=timeout,
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, body: Any = None, missing: int | None = None
    ) -> Any:
        """The JSON answer; None for an answer with status ``missing`` (a 404 kind)."""
        import httpx

        try:
            response = await self._client.request(
                method, path, content=None if body is None else json.dumps(body)
            )
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"no Schema Registry at {self.url}: {exc!r}") from None
        if missing is not None and response.status_code == 404:
            code = _error_code(response)
            if code is None or code == missing:
                return None
        if response.status_code >= 400:
            raise SchemaError(
                f"the Schema Registry at {self.url} answered {method} {path} with "
                f"{response.status_code}: {response.text[:300]}"
            )
        return response.json()

    @staticmethod
    def _subject(event_type: str) -> str:
        return quote(event_type + _SUFFIX, safe="")

    async def stored_schemas(self, event_type: str) -> list[str]:
        subject = self._subject(event_type)
        versions = await self._call("GET", f"/subjects/{subject}/versions", missing=40401)
        texts = []
        for version in sorted(versions or []):
            found = await self._call("GET", f"/subjects/{subject}/versions/{version}")
            texts.append(str(found["schema"]))
        return texts

    async def add_schema(self, event_type: str, version: int, text: str) -> bool:
        subject = self._subject(event_type)
        known = await self._call("GET", f"/subjects/{subject}/versions", missing=40401) or []
        if version in known:
            return False
        await self._call(
            "POST", f"/subjects/{subject}/versions", {"schemaType": "JSON", "schema": text}
        )
        stored = await self._call("GET", f"/subjects/{subject}/versions/latest")
        return int(stored["version"]) == version and json.loads(stored["schema"]) == json.loads(
            text
        )

    async def schema_types(self) -> list[str]:
        subjects = await self._call("GET", "/subjects") or []
        return sorted(s[: -len(_SUFFIX)] for s in subjects if s.endswith(_SUFFIX))

    async def schema_mode(self, event_type: str) -> str | None:
        found = await self._call("GET", f"/config/{self._subject(event_type)}", missing=40408)
        if found is None:
            return None
        level = found.get("compatibilityLevel") or found.get("compatibility")
        return None if level is None else str(level)

    async def set_schema_mode(self, event_type: str, mode: str) -> None:
        await self._call("PUT", f"/config/{self._subject(event_type)}", {"compatibility": mode})


def _error_code(response: Any) -> int | None:
    try:
        code = response.json().get("error_code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
