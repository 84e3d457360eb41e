"""``GET /openapi.json``: the gateway's routes as an OpenAPI 3.1 document (written by hand)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import tidings

__all__ = ["document", "openapi"]

_ERROR = {
    "description": "An error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_TOPIC = {
    "name": "topic",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 249, "pattern": r"^[^\s*>#+]+$"},
}


def _json(schema: str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings gateway",
            "version": tidings.__version__,
            "description": "CloudEvents over HTTP into tidings topics; topics, groups and streams.",
        },
        "paths": {
            "/topics/{topic}/events": {
                "post": {
                    "summary": "Publish events (CloudEvents HTTP binding)",
                    "description": "Structured (application/cloudevents+json), batch "
                    "(application/cloudevents-batch+json) or binary mode (ce- headers, any "
                    "body). Answers once the broker accepted every event.",
                    "parameters": [
                        _TOPIC,
                        {
                            "name": "key",
                            "in": "query",
                            "required": False,
                            "description": "Partition key of the events without partitionkey.",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/cloudevents+json": {
                                "schema": {"$ref": "#/components/schemas/CloudEvent"}
                            },
                            "application/cloudevents-batch+json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/CloudEvent"},
                                }
                            },
                            "*/*": {"schema": {}},
                        },
                    },
                    "responses": {
                        "202": _json("Accepted", "The broker accepted the events"),
                        "400": _ERROR,
                        "413": _ERROR,
                        "415": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/topics": {
                "get": {
                    "summary": "List topics",
                    "responses": {"200": _json("Topics", "Every topic"), "501": _ERROR},
                }
            },
            "/groups": {
                "get": {
                    "summary": "List consumer groups with their lag",
                    "responses": {"200": _json("Groups", "Every group"), "501": _ERROR},
                }
            },
            "/topics/{topic}/stream": {
                "get": {
                    "summary": "New events as Server-Sent Events",
                    "description": "id is <partition>:<offset>; send Last-Event-ID to resume "
                    "(inspectable brokers). data is a structured CloudEvent.",
                    "parameters": [
                        _TOPIC,
                        {
                            "name": "filter",
                            "in": "query",
                            "description": "ATTR=VALUE (repeatable: all must match)",
                            "schema": {"type": "array", "items": {"type": "string"}},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "description": "End the stream after this many events",
                            "schema": {"type": "integer", "minimum": 1},
                        },
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {"schemas": _SCHEMAS},
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "CloudEvent": {
        "type": "object",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"type": "string", "minLength": 1},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "datacontenttype": {"type": "string"},
            "partitionkey": {"type": "string"},
            "data": {},
            "data_base64": {"type": "string", "contentEncoding": "base64"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["topic", "ids"],
        "properties": {
            "topic": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Topics": {
        "type": "object",
        "properties": {"topics": {"type": "array", "items": {"type": "object"}}},
    },
    "Groups": {
        "type": "object",
        "properties": {"groups": {"type": "array", "items": {"type": "object"}}},
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
