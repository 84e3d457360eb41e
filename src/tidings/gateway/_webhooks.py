"""``/webhooks``: register, list, remove and resume webhooks over HTTP.

``GET /webhooks`` lists them (with ``paused``, ``failures`` and
``last_error``; never the secret); ``POST /webhooks`` registers one from
``{"url": ..., "topic": ..., "filter": {...}, "secret": "whsec_..."}``
(``filter`` and ``secret`` optional) and answers 201 with it and its secret;
``DELETE /webhooks/{id}`` removes one; ``POST /webhooks/{id}/resume``
resumes a paused one. A target inside the network is refused with 400
unless the gateway runs with ``--allow-private-webhooks``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidings.errors import ConfigurationError, TidingsError
from tidings.gateway._responses import error
from tidings.gateway._state import gateway_of
from tidings.webhooks import WebhookStorage, WebhookStore, new_webhook, register

__all__ = [
    "OPENAPI_PATHS",
    "OPENAPI_SCHEMAS",
    "add_webhook",
    "list_webhooks",
    "remove_webhook",
    "resume_webhook",
]

Handler = Callable[[Request, WebhookStore], Awaitable[Response]]
_FIELDS = frozenset({"url", "topic", "filter", "secret"})


def _route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` on the broker's webhook store, with the core's errors as HTTP statuses."""

    async def endpoint(request: Request) -> Response:
        broker = gateway_of(request).broker
        if not isinstance(broker, WebhookStorage):
            return error(
                501,
                f"{type(broker).__name__} keeps no webhook registrations; serve the "
                "embedded broker (sqlite://) to use webhooks",
            )
        try:
            return await handler(request, broker.webhook_store())
        except ConfigurationError as exc:
            return error(400, str(exc))
        except TidingsError as exc:
            return error(503, f"the broker failed: {exc}")

    return endpoint


async def _list(request: Request, store: WebhookStore) -> Response:
    return JSONResponse({"webhooks": [w.to_dict() for w in await store.webhooks()]})


async def _add(request: Request, store: WebhookStore) -> Response:
    body = _registration(await request.body())
    webhook = new_webhook(
        body["url"], body["topic"], filter=body.get("filter"), secret=body.get("secret")
    )
    allow_private = gateway_of(request).settings.webhooks.allow_private
    await register(store, webhook, allow_private=allow_private)
    return JSONResponse({**webhook.to_dict(), "secret": webhook.secret}, status_code=201)


async def _remove(request: Request, store: WebhookStore) -> Response:
    webhook_id = request.path_params["id"]
    if not await store.remove_webhook(webhook_id):
        return error(404, f"no webhook {webhook_id!r} (GET /webhooks lists them)")
    return JSONResponse({"removed": webhook_id})


async def _resume(request: Request, store: WebhookStore) -> Response:
    webhook_id = request.path_params["id"]
    if not await store.set_paused(webhook_id, False):
        return error(404, f"no webhook {webhook_id!r} (GET /webhooks lists them)")
    return JSONResponse({"resumed": webhook_id})


def _registration(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigurationError('the body is a JSON object: {"url": ..., "topic": ...}')
    unknown = set(body) - _FIELDS
    if unknown:
        raise ConfigurationError(f"unknown field(s): {', '.join(sorted(unknown))}")
    for name in ("url", "topic"):
        if not isinstance(body.get(name), str):
            raise ConfigurationError(f"{name!r} is required, a string")
    if body.get("secret") is not None and not isinstance(body["secret"], str):
        raise ConfigurationError("'secret' is a string: whsec_ followed by base64")
    if body.get("filter") is not None and not isinstance(body["filter"], dict):
        raise ConfigurationError(
            '\'filter\' is a CloudEvents filter object, e.g. {"exact": {"type": "OrderPlaced"}}'
        )
    return body


list_webhooks = _route(_list)
add_webhook = _route(_add)
remove_webhook = _route(_remove)
resume_webhook = _route(_resume)


def _answer(schema: str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    status: {"description": what, "content": {"application/json": {"schema": _ERROR}}}
    for status, what in [
        ("400", "A bad registration, or a target the SSRF guard refuses"),
        ("401", "No valid bearer token"),
        ("404", "No such webhook"),
        ("501", "The broker keeps no webhook registrations"),
    ]
}
_WEBHOOK_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

#: The ``/webhooks`` routes in ``/openapi.json``.
OPENAPI_PATHS: dict[str, Any] = {
    "/webhooks": {
        "get": {
            "summary": "List the webhooks (without their secrets), paused ones included",
            "responses": {"200": _answer("Webhooks", "Every one, oldest first"), **_ERRORS},
        },
        "post": {
            "summary": "Register a webhook: POST each event of topic (matching filter) to url",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/NewWebhook"}}
                },
            },
            "responses": {"201": _answer("Webhook", "It, with its secret"), **_ERRORS},
        },
    },
    "/webhooks/{id}": {
        "delete": {
            "summary": "Remove a webhook",
            "parameters": [_WEBHOOK_ID],
            "responses": {"200": {"description": "Removed"}, **_ERRORS},
        }
    },
    "/webhooks/{id}/resume": {
        "post": {
            "summary": "Resume a paused webhook (its failures count from 0 again)",
            "parameters": [_WEBHOOK_ID],
            "responses": {"200": {"description": "Resumed"}, **_ERRORS},
        }
    },
}

#: The schemas those routes refer to.
OPENAPI_SCHEMAS: dict[str, Any] = {
    "NewWebhook": {
        "type": "object",
        "required": ["url", "topic"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "topic": {"type": "string"},
            "filter": {"type": "object", "description": "A CloudEvents Subscriptions filter"},
            "secret": {"type": "string", "pattern": "^whsec_"},
        },
    },
    "Webhook": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "topic": {"type": "string"},
            "filter": {"type": ["object", "null"]},
            "group": {"type": "string"},
            "created_at": {"type": "number"},
            "paused": {"type": "boolean"},
            "failures": {"type": "integer", "description": "Events dead-lettered in a row"},
            "last_error": {"type": ["string", "null"]},
            "secret": {"type": "string", "description": "Only in the answer to POST"},
        },
    },
    "Webhooks": {
        "type": "object",
        "properties": {
            "webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}
        },
    },
}
