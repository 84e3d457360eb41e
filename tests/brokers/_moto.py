"""moto in server mode: a local AWS API (SNS and SQS here) on a free port, for the tests.

Started by the tests with the moto installed beside them (``moto[server]``, in the
dev extra), stopped by PID. Its state lives in memory: a restarted server is empty.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from _services import free_port, service_missing, stop_process, wait_for_port

__all__ = ["Moto"]


class Moto:
    """``python -m moto.server`` on 127.0.0.1 and a port of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, scheme: str = "sns+sqs", options: str = "") -> str:
        return f"{scheme}://test:test@127.0.0.1:{self.port}" + (f"?{options}" if options else "")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if importlib.util.find_spec("moto.server") is None:
            service_missing("moto[server] is not installed (pip install 'moto[server]')")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port("127.0.0.1", self.port, 30.0):
            self.stop()
            service_missing("the moto server started for the tests did not listen")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10)
