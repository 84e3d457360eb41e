"""An App described as an AsyncAPI 3.0 document: channels, messages, operations, servers.

- **channels**: each topic the App routes to or subscribes (address = topic
  name; wildcard subscriptions keep their pattern);
- **messages**: one per event type, a CloudEvent: its attributes as message
  headers (``type`` fixed to the event type, ``specversion`` to 1.0), its data
  as the payload, with the JSON Schema :func:`~tidings.schemas.schema_for`
  gives (draft 2020-12 keywords such as ``$defs`` kept; references stay local);
  a handler taking raw data gets a message with an open payload;
- **operations**: ``send`` for each routed type, ``receive`` for each
  subscription, with its consumer group in ``x-tidings-group``;
- **servers**: the broker URL, without credentials.

>>> from tidings import App
>>> doc = document(App("docs", broker="memory://"))
>>> doc["asyncapi"], doc["info"]["title"]
('3.0.0', 'docs')
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tidings.payload import payload_info
from tidings.schemas._generate import schema_for

__all__ = ["ASYNCAPI_VERSION", "document"]

ASYNCAPI_VERSION = "3.0.0"

_CLOUDEVENT_HEADERS: dict[str, Any] = {
    "id": {"type": "string", "minLength": 1},
    "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
    "specversion": {"type": "string", "const": "1.0"},
    "time": {"type": "string", "format": "date-time"},
    "subject": {"type": "string"},
    "datacontenttype": {"type": "string"},
    "dataschema": {"type": "string", "format": "uri"},
    "partitionkey": {"type": "string"},
    "schemaversion": {"type": "integer"},
}


def _key(name: str) -> str:
    """A component key (``^[a-zA-Z0-9.\\-_]+$``) for a type or topic name."""
    return re.sub(r"[^a-zA-Z0-9.\-_]", "_", name) or "_"


def _server(url: str | None) -> dict[str, Any] | None:
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if parts.port:
        host = f"{host}:{parts.port}"
    server: dict[str, Any] = {"host": host, "protocol": parts.scheme}
    if parts.path and parts.path != "/":
        server["pathname"] = parts.path
    return server


def _message(event_type: str, cls: type | None) -> dict[str, Any]:
    headers = {
        "type": "object",
        "required": ["id", "source", "specversion", "type"],
        "properties": {**_CLOUDEVENT_HEADERS, "type": {"type": "string", "const": event_type}},
    }
    message: dict[str, Any] = {
        "name": event_type,
        "title": event_type,
        "contentType": "application/json",
        "headers": headers,
        "x-cloudevents-type": event_type,
    }
    if cls is None:
        message["payload"] = {"description": "any JSON data"}
        return message
    schema = schema_for(cls)
    payload = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    message["payload"] = payload
    message["x-tidings-version"] = payload_info(cls).version
    message["x-dataschema"] = schema.get("$id")
    return message


def document(app: Any, title: str | None = None, version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``app`` (a :class:`~tidings.App`)."""
    messages: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, dict[str, Any]] = {}

    def channel(topic: str) -> str:
        key = _key(topic)
        channels.setdefault(key, {"address": topic, "messages": {}})
        return key

    def message(channel_key: str, event_type: str, cls: type | None) -> dict[str, str]:
        key = _key(event_type)
        messages.setdefault(key, _message(event_type, cls))
        channels[channel_key]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{channel_key}/messages/{key}"}

    routed = {payload_info(cls).name: cls for cls in app.router.payload_types()}
    for event_type, topic in sorted(app.router.routes().items()):
        key = channel(topic)
        ref = message(key, event_type, routed.get(event_type))
        operations[_key(f"send.{event_type}")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [ref],
        }
    for subscription in app._subscriptions:
        spec = app._specs[subscription.name]
        accepts: dict[str, type] = dict(spec.accepts or {})
        for topic in subscription.topics:
            key = channel(topic)
            refs = [message(key, t, accepts[t]) for t in sorted(accepts)]
            if not accepts:
                refs = [message(key, "any", None)]
            operations[_key(f"receive.{subscription.name}.{topic}")] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "messages": refs,
                "summary": f"{spec.where} in group {subscription.group}",
                "x-tidings-group": subscription.group,
            }
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or app.name,
            "version": version,
            "description": f"Events of the tidings app {app.name!r} (CloudEvents 1.0).",
        },
        "defaultContentType": "application/json",
    }
    server = _server(app.broker_url)
    if server is not None:
        doc["servers"] = {"broker": server}
    doc["channels"] = channels
    doc["operations"] = operations
    doc["components"] = {"messages": messages}
    return doc
