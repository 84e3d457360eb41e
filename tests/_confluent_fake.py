"""An in-test fake of a Confluent Schema Registry's documented REST endpoints.

Only what tidings calls, answering as Confluent documents it (error codes
40401 subject not found, 40402 version not found, 40408 no subject-level
compatibility): subjects, versions, registering (an equal schema returns the
existing id), and per-subject compatibility config. Served by uvicorn on a
free loopback port for the test that uses it. It is not Confluent's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_TYPE = "application/vnd.schemaregistry.v1+json"


class FakeRegistry:
    def __init__(self) -> None:
        self.subjects: dict[str, list[tuple[int, str]]] = {}  # subject -> [(id, schema text)]
        self.config: dict[str, str] = {}
        self.ids: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/subjects", self.list_subjects),
                # Subjects may hold a percent-encoded '/', which Starlette decodes.
                Route("/subjects/{subject:path}/versions/{version}", self.version),
                Route("/subjects/{subject:path}/versions", self.versions, methods=["GET", "POST"]),
                Route("/config/{subject:path}", self.subject_config, methods=["GET", "PUT"]),
            ]
        )

    @staticmethod
    def _answer(body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status, media_type=_TYPE)

    def _missing(self, code: int, message: str) -> JSONResponse:
        return self._answer({"error_code": code, "message": message}, 404)

    async def list_subjects(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, request.url.path))
        return self._answer(sorted(self.subjects))

    async def versions(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, request.url.path))
        subject = request.path_params["subject"]
        if request.method == "POST":
            body = json.loads(await request.body())
            if body.get("schemaType") != "JSON":
                return self._answer({"error_code": 42201, "message": "Invalid schema"}, 422)
            text = body["schema"]
            canonical = json.dumps(json.loads(text), sort_keys=True)
            known = self.subjects.setdefault(subject, [])
            for schema_id, existing in known:
                if json.dumps(json.loads(existing), sort_keys=True) == canonical:
                    return self._answer({"id": schema_id})
            schema_id = self.ids.setdefault(canonical, len(self.ids) + 1)
            known.append((schema_id, text))
            return self._answer({"id": schema_id})
        if subject not in self.subjects:
            return self._missing(40401, f"Subject '{subject}' not found.")
        return self._answer(list(range(1, len(self.subjects[subject]) + 1)))

    async def version(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, request.url.path))
        subject, version = request.path_params["subject"], request.path_params["version"]
        if subject not in self.subjects:
            return self._missing(40401, f"Subject '{subject}' not found.")
        known = self.subjects[subject]
        number = len(known) if version == "latest" else int(version)
        if not 1 <= number <= len(known):
            return self._missing(40402, f"Version {version} not found.")
        schema_id, text = known[number - 1]
        return self._answer(
            {
                "subject": subject,
                "version": number,
                "id": schema_id,
                "schemaType": "JSON",
                "schema": text,
            }
        )

    async def subject_config(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, request.url.path))
        subject = request.path_params["subject"]
        if request.method == "PUT":
            level = json.loads(await request.body())["compatibility"]
            self.config[subject] = level
            return self._answer({"compatibility": level})
        if subject not in self.config:
            return self._missing(40408, f"Subject '{subject}' does not have subject-level config")
        return self._answer({"compatibilityLevel": self.config[subject]})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[FakeRegistry, str]]:
    """A fake registry on a free loopback port: (fake, base URL)."""
    fake = FakeRegistry()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
