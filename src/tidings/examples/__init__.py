"""Runnable examples that ship with tidings (``tidings demo`` runs :mod:`.quickstart`)."""
