"""Settings read from the environment (only here and in the CLI)."""

from __future__ import annotations

import os

__all__ = ["DEFAULT_BROKER_URL", "default_broker_url"]

#: Used when neither ``broker=`` nor ``TIDINGS_BROKER`` is given.
DEFAULT_BROKER_URL = "sqlite:///./tidings.db"


def default_broker_url() -> str:
    """``TIDINGS_BROKER`` if set, else :data:`DEFAULT_BROKER_URL`."""
    return os.environ.get("TIDINGS_BROKER") or DEFAULT_BROKER_URL
