"""A real ``tidings serve`` process on a free loopback port, for the gateway's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "brokers"))
from _services import free_port, wait_for_port

__all__ = ["Served", "free_port", "serving"]


@dataclass
class Served:
    url: str
    """http://127.0.0.1:PORT"""
    port: int
    process: subprocess.Popen[bytes]
    stdout: str = ""
    stderr: str = ""


@contextmanager
def serving(broker: str, cwd: Path, *args: str, **env: str) -> Iterator[Served]:
    """``tidings serve --broker BROKER ARGS`` until the block ends (then SIGINT, exit 0)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    environment |= {"NO_COLOR": "1", **env}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings.cli",
            "serve",
            "--broker",
            broker,
            "--port",
            str(port),
            *args,
        ],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", port, process)
    try:
        if not wait_for_port("127.0.0.1", port, 30):
            process.kill()
            _, err = process.communicate(timeout=10)
            raise AssertionError(f"tidings serve did not listen: {err.decode()}")
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        served.stdout, served.stderr = out.decode(), err.decode()
    assert process.returncode == 0, served.stderr
