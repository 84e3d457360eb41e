"""Simulated devices: each reports a temperature around its own baseline, with noise.

:meth:`DeviceFleet.inject` makes a device report a chosen value next time (a
stuck heater, a failing sensor), to see the anomaly detector react.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from tidings import App, Event
from tidings.examples.sensors.events import TemperatureReading

__all__ = ["DeviceFleet"]


class DeviceFleet:
    """``count`` devices publishing through ``app``; ``published`` keeps every reading sent."""

    def __init__(self, app: App, count: int = 5, *, seed: int = 1, noise: float = 0.5) -> None:
        self.app = app
        self.random = random.Random(seed)
        self.noise = noise
        self.baselines = {
            f"sensor-{n:02d}": round(self.random.uniform(18.0, 26.0), 1) for n in range(count)
        }
        self.published: list[TemperatureReading] = []
        self._injected: dict[str, float] = {}

    def inject(self, device_id: str, celsius: float) -> None:
        """Make ``device_id`` report ``celsius`` in the next round."""
        if device_id not in self.baselines:
            raise KeyError(f"no device {device_id!r}")
        self._injected[device_id] = celsius

    def round(self) -> list[Event]:
        """One reading per device, as events ready to publish."""
        now = datetime.now(UTC)
        events = []
        for device_id, baseline in self.baselines.items():
            celsius = self._injected.pop(device_id, None)
            if celsius is None:
                celsius = round(baseline + self.random.gauss(0.0, self.noise), 2)
            reading = TemperatureReading(device_id=device_id, celsius=celsius, taken_at=now)
            self.published.append(reading)
            events.append(self.app.event(reading, key=device_id))
        return events

    async def publish_round(self) -> None:
        await self.app.publish_batch(self.round())
