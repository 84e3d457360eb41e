from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest


@pytest.fixture
def memory_url() -> Callable[[], str]:
    """A fresh ``memory://`` URL (its own hub) per call."""
    return lambda: f"memory://test-{uuid.uuid4().hex}"
