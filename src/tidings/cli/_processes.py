"""``tidings run --workers N`` and ``--reload``: the app in child processes, supervised.

Each child is ``python -m tidings.cli run TARGET ...`` in its own session, so a
Ctrl-C in the terminal reaches this parent only, which passes one signal to
each child (a second Ctrl-C passes a second one: the children then cancel
their handlers, as a single ``tidings run`` would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tidings.cli._errors import EXIT_FAILURE, EXIT_USAGE, CommandError, stderr

__all__ = ["child_command", "reload_forever", "supervise"]

#: A worker restarted more often than this within RESTART_WINDOW seconds: give up.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 60.0


def child_command(target: str, options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tidings.cli", "run", target, *options]


def _start(command: list[str], worker: int | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if worker is not None:
        env["TIDINGS_WORKER"] = str(worker)
    return subprocess.Popen(command, env=env, start_new_session=True)


class _Signals:
    """Counts SIGINT/SIGTERM received by this parent and passes each on to the children."""

    def __init__(self) -> None:
        self.count = 0
        self.children: list[subprocess.Popen[bytes]] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)

    def _received(self, sig: int, frame: FrameType | None) -> None:
        self.count += 1
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)


def _wait_all(children: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    deadline = time.monotonic() + STOP_TIMEOUT
    codes = []
    for child in children:
        try:
            codes.append(child.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    return codes


def supervise(commands: Sequence[list[str]]) -> int:
    """Run one child per command; restart one that dies; stop all on a signal."""
    signals = _Signals()
    say = stderr().print
    children = [_start(command, n) for n, command in enumerate(commands)]
    signals.children = children
    say(f"tidings: {len(children)} workers (pids {', '.join(str(c.pid) for c in children)})")
    restarts: list[float] = []
    while signals.count == 0:
        time.sleep(0.1)
        for n, child in enumerate(children):
            code = child.poll()
            if code is None or signals.count:
                continue
            if code == EXIT_USAGE:
                say(f"tidings: worker {n} refused its command line (exit {code}); stopping all")
                return _stop_all(signals, children, EXIT_USAGE)
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if len(restarts) > MAX_RESTARTS:
                say(
                    f"tidings: workers exited {len(restarts)} times in {RESTART_WINDOW:.0f}s "
                    f"(last: worker {n}, exit {code}); stopping all"
                )
                return _stop_all(signals, children, EXIT_FAILURE)
            say(f"tidings: worker {n} (pid {child.pid}) exited with {code}; starting it again")
            children[n] = _start(commands[n], n)
    say(f"tidings: stopping {len(children)} workers (they drain their handlers)")
    codes = _wait_all(children)
    return 0 if all(code == 0 for code in codes) else EXIT_FAILURE


def _stop_all(signals: _Signals, children: list[subprocess.Popen[bytes]], code: int) -> int:
    signals._received(signal.SIGINT, None)
    _wait_all(children)
    return code


def reload_forever(command: list[str], root: Path) -> int:
    """Run the app in a child; on a change of a Python file under ``root``, run it anew."""
    try:
        import watchfiles
    except ImportError:
        raise CommandError(
            "--reload needs watchfiles: pip install 'tidings[reload]'", EXIT_USAGE
        ) from None
    signals = _Signals()
    say = stderr().print
    child = _start(command)
    signals.children = [child]
    say(f"tidings: reloading on changes of *.py under {root}")
    for changes in watchfiles.watch(
        root,
        watch_filter=watchfiles.PythonFilter(),
        rust_timeout=200,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        if signals.count:
            break
        if not changes:
            continue
        changed = sorted({Path(path).name for _, path in changes})
        say(f"tidings: {', '.join(changed)} changed; restarting")
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            _wait_all([child])
        child = _start(command)
        signals.children = [child]
    return _wait_all([child])[0]
