"""How the CLI reports a user's mistake: one line on stderr, an exit code, no traceback."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandError", "report", "stderr"]

#: A command failed (the app's configuration, the broker, a failed demo).
EXIT_FAILURE = 1
#: The command line itself is wrong (argument, option, module path, URL).
EXIT_USAGE = 2


class CommandError(Exception):
    """Stops a command with ``message`` shown as ``error: ...`` and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def stderr() -> Console:
    """A console on stderr that never wraps a line and never reads markup in user text."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def report(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    one_line = " ".join(message.split())
    stderr().print(Text.assemble(("error:", "bold red"), " ", one_line))
