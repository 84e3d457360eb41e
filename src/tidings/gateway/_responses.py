"""JSON answers, errors included: ``{"error": "what is wrong and what to do"}``."""

from __future__ import annotations

from starlette.responses import JSONResponse

__all__ = ["error"]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
