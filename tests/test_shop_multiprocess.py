"""The shop as separate processes on one embedded database: ``tidings run`` per service.

Orders come from ``python -m tidings.examples.shop.orders``; the invariants are
checked from outside by ``python -m tidings.examples.shop.check``. Half-way
through, the mailer is killed (SIGKILL, no goodbye) and started again: the
events it had not acked are redelivered to the new process, which must not
send any email twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import pytest

from tidings.examples.shop.mailer import Outbox

SERVICES = ("orders", "inventory", "payment", "saga", "shipping", "mailer", "analytics", "fraud")
# A short session, so that the killed mailer's partitions move on quickly.
BROKER = "sqlite:///./shop.db?session_timeout=2"
STARTUP = 30.0
ORDERS = 150


class Service:
    """One ``tidings run`` process, its output in a log file (no pipe to fill up)."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str], stack: ExitStack) -> None:
        self.name = name
        self.log = cwd / f"{name}-{time.monotonic_ns()}.log"
        handle: IO[bytes] = stack.enter_context(self.log.open("wb"))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings.cli",
                "run",
                f"tidings.examples.shop.{name}:app",
                "--log-level",
                "error",
            ],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_running(self, deadline: float) -> None:
        while "running on" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not start:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def _running(cwd: Path, env: dict[str, str]) -> Iterator[tuple[dict[str, Service], ExitStack]]:
    with ExitStack() as stack:
        services = {name: Service(name, cwd, env, stack) for name in SERVICES}
        try:
            yield services, stack
        finally:
            for service in services.values():
                if service.process.poll() is None:
                    service.process.kill()
                service.process.wait()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "SHOP_"))}
    env.update(TIDINGS_BROKER=BROKER, NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def _logs(services: dict[str, Service]) -> str:
    return "\n".join(f"--- {s.name}\n{s.output()[-2000:]}" for s in services.values())


def test_separate_services_keep_the_invariants_through_a_crash(tmp_path: Path) -> None:
    env = _env()
    with _running(tmp_path, env) as (services, stack):
        deadline = time.monotonic() + STARTUP
        for service in services.values():
            service.wait_running(deadline)
        generator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings.examples.shop.orders",
                "--orders",
                str(ORDERS),
                "--rate",
                "100",
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # Kill the mailer while orders are flowing, then start a new one.
            outbox = tmp_path / "shop-outbox.jsonl"
            while sum(Outbox.read(outbox).values()) < 20 and generator.poll() is None:
                time.sleep(0.02)
            services["mailer"].process.send_signal(signal.SIGKILL)
            services["mailer"].process.wait(timeout=10)
            services["mailer"] = Service("mailer", tmp_path, env, stack)
            services["mailer"].wait_running(time.monotonic() + STARTUP)
            placed, _ = generator.communicate(timeout=30)
        finally:
            if generator.poll() is None:
                generator.kill()
                generator.communicate()
        assert generator.returncode == 0, placed
        assert f"placed {ORDERS} orders" in placed
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "tidings.examples.shop.check",
                "--orders",
                str(ORDERS),
                "--timeout",
                "25",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=40,
        )
        codes = {name: service.stop() for name, service in services.items()}
    report = check.stdout + check.stderr
    assert check.returncode == 0, report + _logs(services)
    assert f"orders: {ORDERS} placed" in report
    assert "ok    one email per confirmed order" in report
    assert "ok    the DLQ holds exactly the poison events (3 poison, 3 dead letters)" in report
    assert "ok    stock conserved" in report
    assert codes == dict.fromkeys(SERVICES, 0), _logs(services)
    emails = Outbox.read(tmp_path / "shop-outbox.jsonl")
    assert emails and set(emails.values()) == {1}
