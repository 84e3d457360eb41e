"""The producer and consumer processes of a run: start, signal, restart, stop.

Each incarnation of a slot is a new process with its own log (acknowledged
publishes or handlings) and its own output file (stdout and stderr, never a
pipe that could fill up). A process that exits without being told to is
recorded as a crash and restarted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import RunConfig

__all__ = ["Crash", "Names", "Role", "Worker", "Workers"]

Role = Literal["producer", "consumer"]
_PACKAGE = __package__ or "chaos"
# The directory that makes this package importable (tests/ or the repository root).
_IMPORT_ROOT = Path(__file__).resolve().parents[_PACKAGE.count(".") + 1]


@dataclass(frozen=True)
class Names:
    """Topics and group of one run, unique so runs can share a broker."""

    run: str

    @property
    def topic(self) -> str:
        return f"chaos.{self.run}.in"

    @property
    def output(self) -> str:
        return f"chaos.{self.run}.out"

    @property
    def group(self) -> str:
        return f"chaos-{self.run}"


@dataclass
class Worker:
    role: Role
    slot: int
    incarnation: int
    process: subprocess.Popen[bytes]
    log: Path
    output: Path
    paused: bool = False
    expected_exit: bool = False

    @property
    def name(self) -> str:
        return f"{self.role[0]}{self.slot}.{self.incarnation}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            self.process.send_signal(sig)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Crash:
    worker: str
    returncode: int
    tail: str


@dataclass
class Workers:
    config: RunConfig
    names: Names
    producers: list[Worker] = field(default_factory=list)
    consumers: list[Worker] = field(default_factory=list)
    spawned: list[Worker] = field(default_factory=list)
    """Every incarnation started, in order."""
    crashes: list[Crash] = field(default_factory=list)
    slow_stops: list[str] = field(default_factory=list)
    """Workers that did not exit within ``stop_timeout`` of SIGTERM (then killed)."""

    def __post_init__(self) -> None:
        self._env = dict(os.environ)
        path = self._env.get("PYTHONPATH")
        root = str(_IMPORT_ROOT)
        self._env["PYTHONPATH"] = f"{root}{os.pathsep}{path}" if path else root
        self._env.update(
            TIDINGS_BROKER=self.config.url,
            CHAOS_TOPIC=self.names.topic,
            CHAOS_OUTPUT_TOPIC=self.names.output,
            CHAOS_GROUP=self.names.group,
            CHAOS_DELIVERY=self.config.delivery,
            CHAOS_CONCURRENCY=str(self.config.concurrency),
            CHAOS_WORK=str(self.config.work),
        )

    def start(self) -> None:
        self.consumers = [self._consumer(slot, 0) for slot in range(self.config.consumers)]
        self.producers = [self._producer(slot, 0) for slot in range(self.config.producers)]

    def all(self) -> list[Worker]:
        return [*self.consumers, *self.producers]

    def _files(self, role: Role, slot: int, incarnation: int) -> tuple[Path, Path]:
        stem = f"{role}-{slot}.{incarnation}"
        return self.config.workdir / f"{stem}.log", self.config.workdir / f"{stem}.out"

    def _spawn(self, role: Role, slot: int, incarnation: int, argv: list[str]) -> Worker:
        log, output = self._files(role, slot, incarnation)
        env = dict(self._env, CHAOS_LOG=str(log))
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=_IMPORT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(role, slot, incarnation, process, log, output)
        self.spawned.append(worker)
        return worker

    def _consumer(self, slot: int, incarnation: int) -> Worker:
        argv = ["-m", "tidings.cli", "run", f"{_PACKAGE}.consumer:app"]
        argv += ["--broker", self.config.url, "--log-level", "warning"]
        return self._spawn("consumer", slot, incarnation, argv)

    def _producer(self, slot: int, incarnation: int) -> Worker:
        name = f"p{slot}.{incarnation}"
        log, _ = self._files("producer", slot, incarnation)
        argv = ["-m", f"{_PACKAGE}.producer", self.config.url, self.names.topic, name, str(log)]
        argv += ["--keys", str(self.config.keys), "--rate", str(self.config.rate)]
        argv += ["--seed", str(self.config.seed)]
        return self._spawn("producer", slot, incarnation, argv)

    def restart(self, worker: Worker) -> Worker:
        """Start the next incarnation of ``worker``'s slot (the old one must be gone)."""
        start = self._consumer if worker.role == "consumer" else self._producer
        new = start(worker.slot, worker.incarnation + 1)
        pool = self.consumers if worker.role == "consumer" else self.producers
        pool[worker.slot] = new
        return new

    def kill(self, worker: Worker) -> None:
        worker.expected_exit = True
        worker.signal(signal.SIGKILL)
        worker.process.wait()

    async def terminate(self, worker: Worker) -> None:
        """SIGTERM and wait for the graceful stop; SIGKILL after ``stop_timeout``."""
        worker.expected_exit = True
        if worker.paused:
            self.resume(worker)
        worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout
        while worker.alive:
            if time.monotonic() > deadline:
                self.slow_stops.append(worker.name)
                self.kill(worker)
                return
            await asyncio.sleep(0.05)

    def pause(self, worker: Worker) -> None:
        worker.signal(signal.SIGSTOP)
        worker.paused = True

    def resume(self, worker: Worker) -> None:
        worker.signal(signal.SIGCONT)
        worker.paused = False

    def reap(self) -> list[Worker]:
        """Record and restart workers that exited on their own; return the new ones."""
        restarted = []
        for worker in self.all():
            if worker.expected_exit or worker.alive:
                continue
            code = worker.process.returncode
            self.crashes.append(Crash(worker.name, code, worker.tail()))
            restarted.append(self.restart(worker))
        return restarted

    async def stop(self, workers: list[Worker]) -> None:
        await asyncio.gather(*(self.terminate(w) for w in workers if w.alive))

    def kill_all(self) -> None:
        """Last resort (an interrupted run): no process of the run survives it."""
        for worker in self.all():
            if worker.alive:
                self.kill(worker)
