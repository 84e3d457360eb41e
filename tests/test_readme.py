"""The README app runs exactly as the README says: a file, `tidings run`, `tidings publish`."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TIMEOUT = 60.0


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _commands(section: str) -> list[list[str]]:
    """The `tidings ...` lines of the section's first sh block (comments dropped)."""
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [shlex.split(line, comments=True) for line in block[1].splitlines() if line.strip()]


def test_the_readme_app_runs_as_the_readme_says(tmp_path: Path) -> None:
    section = _section("An app in 20 lines")
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None and "readme_app.py" in section
    (tmp_path / "readme_app.py").write_text(code[1])
    run, publish = _commands(section)
    assert run[:2] == ["tidings", "run"] and publish[:2] == ["tidings", "publish"]
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_BROKER"}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1")  # the lines arrive as a terminal shows them
    tidings = [sys.executable, "-m", "tidings.cli"]
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen(
            [*tidings, *run[1:]], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait(lambda: "running on" in log.read_text(), service, log)
        published = subprocess.run(
            [*tidings, *publish[1:]], cwd=tmp_path, env=env, capture_output=True, timeout=TIMEOUT
        )
        assert published.returncode == 0, published.stderr
        _wait(lambda: "is on its way" in log.read_text(), service, log)
    finally:
        service.send_signal(signal.SIGINT)
        code_ = service.wait(timeout=TIMEOUT)
    output = log.read_text()
    assert code_ == 0, output
    for promised in re.findall(r"prints `([^`]+)`, then `([^`]+)`", " ".join(section.split()))[0]:
        assert promised in output, (promised, output)
    assert (tmp_path / "tidings.db").exists()  # the embedded broker, as the comment says


def _wait(condition: object, service: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline or service.poll() is not None:
            service.kill()
            pytest.fail(f"the README app did not do what the README says:\n{log.read_text()}")
        time.sleep(0.05)
