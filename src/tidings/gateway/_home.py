"""``GET /``: a placeholder page until the dashboard comes (it shows nothing of the events)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["home"]

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tidings gateway</title></head>
<body>
<h1>tidings gateway</h1>
<p>Signed in: this browser keeps the token in a cookie.
The routes are described in <a href="/openapi.json">/openapi.json</a>.</p>
</body>
</html>
"""


async def home(request: Request) -> Response:
    return HTMLResponse(_PAGE, headers={"cache-control": "no-store"})
