from __future__ import annotations

import subprocess
import sys


def test_import_tidings_imports_no_optional_or_cli_dependency() -> None:
    code = (
        "import sys, tidings; "
        "print(sorted(m for m in ('pydantic', 'typer', 'rich', 'pytest', 'hypothesis') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
