"""The sensor network's event types and topics."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from tidings import App

__all__ = ["ALERTS", "READINGS", "TemperatureAlert", "TemperatureReading", "prepare"]

READINGS = "sensors.readings"
ALERTS = "sensors.alerts"


class TemperatureReading(BaseModel):
    device_id: str
    celsius: float
    taken_at: datetime


class TemperatureAlert(BaseModel):
    device_id: str
    celsius: float
    expected: float | None
    """The device's usual temperature when the reading arrived (None: not known yet)."""
    reason: str
    reading_id: str
    """The id of the reading event that raised the alert."""


def prepare(app: App) -> App:
    """Declare where sensor events go; readings are keyed by device (in order per device)."""
    app.route(TemperatureReading, READINGS)
    app.route(TemperatureAlert, ALERTS)
    return app
