"""Projections: read models fed from the event store, with a stored checkpoint.

A :class:`Projection` says which event types it takes and how each changes
its read model; a :class:`Projector` feeds it from an
:class:`~tidings.eventsourcing.EventStore` in global order. Each batch of
events and the projection's new checkpoint commit in **one transaction** of
the read model's database (PostgreSQL or SQLite, through the same drivers as
the outbox), so a crash never applies an event twice or skips one.
``tidings projection rebuild MODULE:PROJECTOR`` replays from the start;
``tidings projection status MODULE:PROJECTOR`` shows checkpoints and lag.
"""

from __future__ import annotations

from tidings.projections.projection import Projection
from tidings.projections.projector import ProjectionStatus, Projector

__all__ = ["Projection", "ProjectionStatus", "Projector"]
