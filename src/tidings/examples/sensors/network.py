"""A sensor network in one process: devices, the anomaly detector, the aggregator.

::

    async with SensorNetwork("sqlite:///./sensors.db") as network:
        await network.publish_rounds(20)
        network.fleet.inject("sensor-02", 95.0)
        await network.publish_rounds(1)
        await network.drain()
        print(network.detector.alerts, network.aggregator.averages())

The broker is a URL: the embedded one, or MQTT (``mqtt://127.0.0.1:1883``).
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from tidings import App
from tidings.broker import Broker
from tidings.brokers import from_url
from tidings.examples.sensors.aggregator import RollingAverages
from tidings.examples.sensors.detector import AnomalyDetector
from tidings.examples.sensors.devices import DeviceFleet
from tidings.examples.sensors.events import prepare

__all__ = ["SensorNetwork"]


class SensorNetwork:
    def __init__(self, broker: str | Broker, *, devices: int = 5, seed: int = 1) -> None:
        self.broker = from_url(broker) if isinstance(broker, str) else broker
        self.devices_app = prepare(App("sensors-devices", broker=self.broker))
        self.fleet = DeviceFleet(self.devices_app, devices, seed=seed)
        self.detector = AnomalyDetector(self.broker)
        self.aggregator = RollingAverages(self.broker)

    @property
    def apps(self) -> list[App]:
        return [self.devices_app, self.detector.app, self.aggregator.app]

    async def publish_rounds(self, rounds: int, interval: float = 0.0) -> None:
        """Publish ``rounds`` readings per device, ``interval`` seconds apart."""
        for n in range(rounds):
            if n and interval:
                await asyncio.sleep(interval)
            await self.fleet.publish_round()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every published reading was handled by both consumers."""
        deadline = time.monotonic() + timeout
        published = len(self.fleet.published)
        while min(self.aggregator.count, self.detector.judged) < published or not all(
            app.idle for app in self.apps
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.aggregator.count} (aggregator) and {self.detector.judged} (detector) "
                    f"of {published} readings handled after {timeout}s"
                )
            await asyncio.sleep(0.01)

    async def start(self) -> None:
        await self.broker.connect()
        for app in self.apps:
            await app.start()

    async def stop(self) -> None:
        for app in reversed(self.apps):
            await app.stop()
        await self.broker.close()

    async def __aenter__(self) -> SensorNetwork:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
