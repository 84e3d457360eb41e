from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def memory_url() -> Callable[[], str]:
    """A fresh ``memory://`` URL (its own hub) per call."""
    return lambda: f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something listens on for the whole test."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield int(busy.getsockname()[1])
