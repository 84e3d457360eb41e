"""Reproductions of defects the chaos runs found (scripts, not tests: they print).

Run from the repository root, e.g. ``python -m tests.chaos.repros.read_paging``.
Once a defect is fixed, its script becomes a regression test.
"""
