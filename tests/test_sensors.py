"""The sensors example on the embedded broker: anomalies raise alerts, averages are right."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.codec import Codec
from tidings.examples.sensors.events import ALERTS, TemperatureAlert
from tidings.examples.sensors.network import SensorNetwork
from tidings.inspection import Inspectable


async def test_injected_anomalies_raise_alerts_and_averages_are_right(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sensors.db'}"
    async with SensorNetwork(url, devices=4, seed=3) as network:
        fleet = network.fleet
        await network.publish_rounds(15)
        await network.drain()
        assert network.detector.alerts == []  # noise alone raises nothing
        usual = statistics.fmean(r.celsius for r in fleet.published if r.device_id == "sensor-02")
        fleet.inject("sensor-01", 95.0)  # a stuck heater: over the absolute limit
        fleet.inject("sensor-02", round(usual - 9.0, 2))  # a window left open
        await network.publish_rounds(6)
        await network.drain()
        # Order is kept per device (the partition key), not across devices.
        alerts = sorted(network.detector.alerts, key=lambda a: a.device_id)
        averages = network.aggregator.averages()
        assert isinstance(network.broker, Inspectable)
        stored = await network.broker.read(ALERTS)
    assert [(a.device_id, a.celsius) for a in alerts] == [
        ("sensor-01", 95.0),
        ("sensor-02", round(usual - 9.0, 2)),
    ]
    assert alerts[0].reason == "above the limit of 60 °C"
    assert alerts[1].reason.startswith("9.")
    assert "below its usual" in alerts[1].reason
    assert alerts[1].expected == pytest.approx(usual, abs=0.5)
    # The alerts are events too, caused by the readings that raised them.
    codec = Codec()
    events = [codec.decode(s.message.value, s.message.headers) for s in stored]
    events.sort(key=lambda e: str(e.data["device_id"]))
    assert [TemperatureAlert.model_validate(e.data) for e in events] == alerts
    assert [e.causationid for e in events] == [a.reading_id for a in alerts]
    # Rolling averages: the mean of each device's last 10 readings, the anomalies included.
    assert len(fleet.published) == 4 * 21
    for device in fleet.baselines:
        last = [r.celsius for r in fleet.published if r.device_id == device][-10:]
        assert averages[device] == pytest.approx(statistics.fmean(last))


async def test_a_spike_does_not_become_the_new_normal(tmp_path: Path) -> None:
    async with SensorNetwork(f"sqlite:///{tmp_path / 's.db'}", devices=1) as network:
        await network.publish_rounds(10)
        for _ in range(3):  # three spikes in a row: each one alerts
            network.fleet.inject("sensor-00", 45.0)
            await network.publish_rounds(1)
        await network.publish_rounds(5)
        await network.drain()
    assert [a.celsius for a in network.detector.alerts] == [45.0, 45.0, 45.0]


def test_the_example_runs_as_a_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidings.examples.sensors", "--rounds", "8"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "45 readings from 5 devices on sqlite:///./tidings-sensors.db" in result.stdout
    assert "ALERT sensor-00: 95.0 °C, above the limit of 60 °C" in result.stdout
    assert (tmp_path / "tidings-sensors.db").exists()
