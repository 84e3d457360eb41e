"""The HTTP gateway: CloudEvents in over HTTP, topics and groups out as JSON, live streams.

Its own package, like the CLI: core never imports it, and it is the only
part of tidings that imports Starlette (install ``tidings[gateway]``).
``tidings serve`` runs it on uvicorn; :func:`create_app` builds the ASGI app
for any other server.
"""

from __future__ import annotations

from tidings.gateway.app import create_app

__all__ = ["create_app"]
