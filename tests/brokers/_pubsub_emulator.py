"""Google's Pub/Sub emulator on a free port, for the tests.

Started with ``gcloud beta emulators pubsub start`` in a process group of its
own (gcloud starts a Java child: the whole group is stopped), stopped by its
group id. Its state lives in memory: a restarted emulator is empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile

from _services import free_port, service_missing, wait_for_port

__all__ = ["Emulator"]

#: Seconds the emulator may take to listen (about 4 s here; a loaded machine takes longer).
_START = 60.0


class Emulator:
    """``gcloud beta emulators pubsub start --host-port=127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._data = tempfile.mkdtemp(prefix="tidings-pubsub-")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, options: str = "", project: str = "tidings-test") -> str:
        query = f"emulator={self.host}" + (f"&{options}" if options else "")
        return f"gcppubsub://{project}?{query}"

    def start(self) -> None:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            service_missing("gcloud is not installed (the Pub/Sub emulator comes with it)")
        self.process = subprocess.Popen(
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={self.host}",
                f"--data-dir={self._data}",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_for_port("127.0.0.1", self.port, _START):
            code = self.process.poll()
            self.stop()
            service_missing(
                "the Pub/Sub emulator did not listen"
                + (
                    f" (gcloud exited {code}: is the pubsub-emulator component installed?)"
                    if code is not None
                    else ""
                )
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass
        # The Java child may outlive gcloud's Python: make sure the group is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
