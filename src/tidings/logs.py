"""Log records as JSON lines, for log shippers: ``tidings run --log-format json``.

Each record becomes one JSON object on one line: ``time`` (UTC, ISO 8601),
``level``, ``logger`` and ``message``, then the event fields that tidings
attaches to records about a delivery (``event_id``, ``type``, ``topic``,
``group``, ``correlation_id``, ``trace_id``, ``attempt``, ``outcome``...),
and ``exception`` when there is a traceback::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level="INFO", handlers=[handler])
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from tidings._logfields import EXTRA

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; values JSON cannot hold become text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, EXTRA, None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)
