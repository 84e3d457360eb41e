"""Times as operators read them: RFC 3339 in UTC with milliseconds (CLI and gateway alike)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time"]


def format_time(value: float | datetime | None) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``; ``-`` for None."""
    if value is None:
        return "-"
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
