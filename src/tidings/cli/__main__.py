"""``python -m tidings.cli``."""

from __future__ import annotations

from tidings.cli import main

main()
