"""Who may use the gateway: a bearer token on every route, WebSocket origins checked.

A request shows the token as ``Authorization: Bearer <token>`` or in the
cookie :data:`COOKIE`; a WebSocket handshake may also carry ``?token=``
(a browser's ``WebSocket`` cannot set headers). ``GET /?token=<token>``
sets that cookie (HttpOnly, SameSite=Strict) and redirects to ``/``, so a
browser is given the token once and the address bar keeps nothing. Only
:data:`OPEN_PATHS` need no token. Tokens are compared in constant time.

A WebSocket handshake whose ``Origin`` is not the gateway's own host (a
page of another site, which a browser would let use the cookie) is
accepted and closed at once with code 1008, as is one without a valid
token; a client that sends no ``Origin`` (not a browser) is not refused for it.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.gateway._responses import error

__all__ = ["COOKIE", "OPEN_PATHS", "POLICY_VIOLATION", "Guard", "refuse_socket"]

COOKIE = "tidings_token"
OPEN_PATHS = frozenset({"/openapi.json"})
#: WebSocket close code for a handshake refused by policy (RFC 6455).
POLICY_VIOLATION = 1008
_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}


class Guard:
    """ASGI middleware: the token check (skipped when ``token`` is None) and the origin check."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = None if token is None else token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            send = _nosniff(send)
        if kind not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if kind == "http" and self._token is not None and scope["path"] != "/":
            bearer = _bearer(scope)  # the common case, read from the raw headers
            if bearer is not None and hmac.compare_digest(bearer, self._token):
                await self.app(scope, receive, send)
                return
        connection = HTTPConnection(scope)
        if kind == "websocket" and not same_origin(connection):
            origin = connection.headers.get("origin", "")
            await refuse_socket(receive, send, f"origin {origin!r} is not this gateway's")
            return
        if self._token is None:
            await self.app(scope, receive, send)
            return
        query_token = connection.query_params.get("token")
        if kind == "http" and scope["path"] == "/" and query_token is not None:
            await self._set_cookie(query_token, connection)(scope, receive, send)
            return
        presented = _presented(connection, query_token if kind == "websocket" else None)
        if presented is not None and self._valid(presented):
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await refuse_socket(receive, send, "missing or invalid token")
        else:
            await _unauthorized(presented is not None)(scope, receive, send)

    def _valid(self, presented: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(presented.encode(), self._token)

    def _set_cookie(self, presented: str, connection: HTTPConnection) -> Response:
        if not self._valid(presented):
            return _unauthorized(True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            presented,
            httponly=True,
            samesite="strict",
            secure=connection.url.scheme == "https",
            path="/",
        )
        return response


def _nosniff(send: Send) -> Send:
    """``send`` adding ``X-Content-Type-Options: nosniff``: JSON holding event content is
    never taken for HTML by a browser."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), _NOSNIFF]
        await send(message)

    return sending


_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


def _presented(connection: HTTPConnection, query_token: str | None) -> str | None:
    """The token the client shows: bearer header, then cookie, then (WebSocket) query."""
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return connection.cookies.get(COOKIE) or query_token


def _unauthorized(shown: bool) -> Response:
    what = "the token is not valid" if shown else "a token is needed"
    response = error(
        401,
        f"{what}: send 'Authorization: Bearer <token>' (TIDINGS_TOKEN, or the token "
        "tidings serve printed and stored on its first start)",
    )
    response.headers["www-authenticate"] = "Bearer"
    return response


def same_origin(connection: HTTPConnection) -> bool:
    """Whether a handshake's ``Origin`` (if any) names the host the request was sent to."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    host = connection.headers.get("host", "").lower()
    parts = urlsplit(origin.lower())
    if not parts.hostname or not host:
        return False  # "null" (a sandboxed or file page), or no Host to compare with
    default = _DEFAULT_PORTS.get(parts.scheme)
    return _without_port(parts.netloc, default) == _without_port(host, default)


def _without_port(netloc: str, default: str | None) -> str:
    return netloc.removesuffix(f":{default}") if default else netloc


async def refuse_socket(receive: Receive, send: Send, reason: str) -> None:
    """Accept a WebSocket handshake and close it at once with 1008 and ``reason``.

    Accepted first, so that the client sees the close code and the reason
    (a refused handshake is only an HTTP 403 to a browser).
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})
