"""``GET /openapi.json``: the gateway's routes as an OpenAPI 3.1 document (written by hand)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import tidings
from tidings.gateway._webhooks import OPENAPI_PATHS, OPENAPI_SCHEMAS

__all__ = ["document", "openapi"]

_ERROR = {
    "description": "An error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_UNAUTHORIZED = {**_ERROR, "description": "No valid bearer token"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_DLQ_TOPIC = {
    "name": "topic",
    "in": "path",
    "required": True,
    "description": "The origin topic (orders) or its dead-letter topic (orders.dlq)",
    "schema": {"type": "string"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1},
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


def _get(summary: str, schema: str, answer: str, *errors: str, **extra: Any) -> dict[str, Any]:
    responses = {"200": _json(schema, answer), "401": _UNAUTHORIZED}
    responses |= {status: _ERROR for status in errors}
    return {"summary": summary, **extra, "responses": responses}


def _paths() -> dict[str, Any]:
    """The routes that only read or administer (publishing and streams are written out)."""
    return {
        "/dlq": {
            "get": _get("List dead-letter topics with their counts", "Queues", "Every one", "501")
        },
        "/dlq/{topic}": {
            "get": _get(
                "The dead letters of a topic, oldest first",
                "Letters",
                "At most limit (default 1000)",
                "400",
                "404",
                "501",
                parameters=[_DLQ_TOPIC, {**_LIMIT, "description": "At most this many"}],
            )
        },
        "/dlq/{topic}/{offset}": {
            "get": _get(
                "One dead letter: its failure record and the event (or the poison message)",
                "Letter",
                "The dead letter",
                "400",
                "404",
                "501",
                parameters=[
                    _DLQ_TOPIC,
                    {
                        "name": "offset",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "partition",
                        "in": "query",
                        "description": "Needed if ambiguous",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
            )
        },
        "/dlq/{topic}/redrive": {
            "post": _get(
                "Publish dead letters again to their origin topic and remove them",
                "Redriven",
                "How many moved",
                "400",
                "404",
                "501",
                parameters=[_DLQ_TOPIC, {**_LIMIT, "description": "The oldest N only"}],
            )
        },
        "/dlq/{topic}/purge": {
            "post": _get(
                "Delete every dead letter of a topic",
                "Purged",
                "How many went",
                "400",
                "404",
                "501",
                parameters=[_DLQ_TOPIC],
            )
        },
        "/events/{id}": {
            "get": _get(
                "Find a stored event by id",
                "Found",
                "The event and every place it is stored",
                "404",
                "501",
                description="Searches every topic but tidings.* and *.dlq ones, or only "
                "the topic named by ?topic=. Reads the topics through.",
                parameters=[
                    _ID,
                    {"name": "topic", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/trace/{id}": {
            "get": _get(
                "The causal tree of a flow (as tidings trace --json prints it)",
                "Flow",
                "The flow",
                "404",
                "501",
                description="id is a correlation id (every event of the flow) or an "
                "event id (that event and what it caused).",
                parameters=[_ID],
            )
        },
        "/topics/{topic}/ws": {
            "get": {
                "summary": "New events over a WebSocket, one structured CloudEvent a text frame",
                "description": "Token by Authorization header, cookie or ?token=. An Origin "
                "other than this host is closed with 1008, as is a missing token; bad "
                "parameters with 4400; after limit events with 1000.",
                "parameters": [
                    _TOPIC,
                    {
                        "name": "filter",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                    _LIMIT,
                    {"name": "token", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"101": {"description": "Switching to the WebSocket protocol"}},
            }
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings gateway",
            "version": tidings.__version__,
            "description": "CloudEvents over HTTP into tidings topics; topics, groups, "
            "streams, dead letters, flows and webhooks. Every route but this document asks for a "
            "bearer token.",
        },
        "security": [{"bearer": []}],
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
                        "401": _UNAUTHORIZED,
                        "413": _ERROR,
                        "415": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/topics": {"get": _get("List topics", "Topics", "Every topic", "501")},
            "/groups": {
                "get": _get("List consumer groups with their lag", "Groups", "Every group", "501")
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
                        "401": _UNAUTHORIZED,
                    },
                }
            },
            **_paths(),
            **OPENAPI_PATHS,
            "/openapi.json": {
                "get": {
                    "summary": "This document (needs no token)",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {
            "schemas": {**_SCHEMAS, **OPENAPI_SCHEMAS},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "TIDINGS_TOKEN, or the token tidings serve stored beside "
                    "the broker and printed on its first start. Browsers: open /?token=... "
                    "once; the token is then kept in an HttpOnly cookie.",
                }
            },
        },
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
    "Queues": {
        "type": "object",
        "properties": {"queues": {"type": "array", "items": {"type": "object"}}},
    },
    "Letter": {
        "type": "object",
        "required": ["topic", "partition", "offset", "stored_at"],
        "properties": {
            "topic": {"type": "string"},
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
            "stored_at": {"type": "string", "format": "date-time"},
            "dead_letter": {"type": "object"},
            "event": {"$ref": "#/components/schemas/CloudEvent"},
            "poison": {"type": "string"},
        },
    },
    "Letters": {
        "type": "object",
        "properties": {
            "topic": {"type": "string"},
            "dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/Letter"}},
        },
    },
    "Redriven": {
        "type": "object",
        "properties": {
            "topic": {"type": "string"},
            "redriven": {"type": "integer"},
            "skipped": {"type": "integer"},
        },
    },
    "Purged": {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "deleted": {"type": "integer"}},
    },
    "Found": {
        "type": "object",
        "properties": {
            "event": {"$ref": "#/components/schemas/CloudEvent"},
            "stored": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Flow": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "matched": {"enum": ["correlationid", "id"]},
            "events": {"type": "integer"},
            "types": {"type": "array", "items": {"type": "string"}},
            "roots": {"type": "array", "items": {"type": "object"}},
        },
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
