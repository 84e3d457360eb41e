"""Rolling averages: the mean of each device's last ``window`` readings, kept live."""

from __future__ import annotations

import statistics
from collections import deque

from tidings import App, Event
from tidings.broker import Broker
from tidings.examples.sensors.events import READINGS, TemperatureReading, prepare

__all__ = ["RollingAverages"]


class RollingAverages:
    """Consumes every reading (anomalies included); ``averages()`` is the current view."""

    def __init__(self, broker: str | Broker | None = None, *, window: int = 10) -> None:
        self.app = prepare(App("sensors-aggregator", broker=broker))
        self.window = window
        self.readings: dict[str, deque[tuple[str, float]]] = {}
        self.count = 0
        self.app.add_subscription(self.add, READINGS)

    async def add(self, reading: TemperatureReading, event: Event) -> None:
        recent = self.readings.setdefault(reading.device_id, deque(maxlen=self.window))
        if any(reading_id == event.id for reading_id, _ in recent):
            return  # a redelivery of a reading already counted
        recent.append((event.id, reading.celsius))
        self.count += 1

    def averages(self) -> dict[str, float]:
        """Per device, the mean of its last ``window`` readings."""
        return {
            device: statistics.fmean(c for _, c in recent)
            for device, recent in sorted(self.readings.items())
        }
