"""Testing tools: an in-memory harness for apps, and the broker conformance suite.

``tidings.testing.conformance`` (which needs pytest) is imported on demand.
"""

from __future__ import annotations

from tidings.testing.harness import Failure, Handled, Harness

__all__ = ["Failure", "Handled", "Harness"]
