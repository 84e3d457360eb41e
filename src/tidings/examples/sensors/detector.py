"""Anomaly detection: per-device state, ``TemperatureReading`` -> ``TemperatureAlert``.

Each device's usual temperature is learned from its recent normal readings
(mean and spread over a window). Once it has seen ``warmup`` readings, a
reading further than ``max(min_jump, sigmas * spread)`` from the mean raises
an alert and is kept out of the baseline, so one spike does not teach the
detector that spikes are normal. A reading above ``limit`` always alerts.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from tidings import App, Context, Event
from tidings.broker import Broker
from tidings.examples.sensors.events import (
    READINGS,
    TemperatureAlert,
    TemperatureReading,
    prepare,
)

__all__ = ["AnomalyDetector", "DeviceState"]


@dataclass
class DeviceState:
    normal: deque[float]
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=100))
    """Ids of the latest readings judged: a redelivered one is not judged twice."""


class AnomalyDetector:
    """``alerts`` lists every alert raised, in order; ``judged`` counts readings judged."""

    def __init__(
        self,
        broker: str | Broker | None = None,
        *,
        window: int = 20,
        warmup: int = 5,
        sigmas: float = 4.0,
        min_jump: float = 3.0,
        limit: float = 60.0,
    ) -> None:
        self.app = prepare(App("sensors-detector", broker=broker))
        self.window = window
        self.warmup = warmup
        self.sigmas = sigmas
        self.min_jump = min_jump
        self.limit = limit
        self.devices: dict[str, DeviceState] = {}
        self.alerts: list[TemperatureAlert] = []
        self.judged = 0
        self.app.add_subscription(self.judge, READINGS)

    async def judge(self, reading: TemperatureReading, event: Event, ctx: Context) -> None:
        state = self.devices.setdefault(reading.device_id, DeviceState(deque(maxlen=self.window)))
        if event.id in state.seen:
            return
        state.seen.append(event.id)
        self.judged += 1
        reason = self._anomaly(state, reading.celsius)
        expected = statistics.fmean(state.normal) if state.normal else None
        if reason is None:
            state.normal.append(reading.celsius)
            return
        alert = TemperatureAlert(
            device_id=reading.device_id,
            celsius=reading.celsius,
            expected=None if expected is None else round(expected, 2),
            reason=reason,
            reading_id=event.id,
        )
        self.alerts.append(alert)
        ctx.emit(alert, partitionkey=reading.device_id)  # alerts of a device stay in order

    def _anomaly(self, state: DeviceState, celsius: float) -> str | None:
        if celsius > self.limit:
            return f"above the limit of {self.limit:g} °C"
        if len(state.normal) < self.warmup:
            return None
        mean = statistics.fmean(state.normal)
        allowed = max(self.min_jump, self.sigmas * statistics.pstdev(state.normal))
        if abs(celsius - mean) > allowed:
            direction = "above" if celsius > mean else "below"
            return f"{abs(celsius - mean):.1f} °C {direction} its usual {mean:.1f} °C"
        return None
