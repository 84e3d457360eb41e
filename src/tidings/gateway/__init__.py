"""The HTTP gateway: CloudEvents in over HTTP, topics and groups out as JSON, live streams.

Its own package, like the CLI: core never imports it, and it is the only
part of tidings that imports Starlette (install ``tidings[gateway]``).
``tidings serve`` runs it on uvicorn; :func:`create_app` builds the ASGI app
for any other server. Every route but ``/openapi.json`` asks for a bearer
token (:class:`Settings`, :func:`stored_token`).
"""

from __future__ import annotations

from tidings.gateway._state import Settings
from tidings.gateway._token import StoredToken, stored_token, token_path
from tidings.gateway.app import create_app

__all__ = ["Settings", "StoredToken", "create_app", "stored_token", "token_path"]
