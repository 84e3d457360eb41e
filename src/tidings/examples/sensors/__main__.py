"""``python -m tidings.examples.sensors``: a few rounds of readings, an injected fault, a report."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tidings.examples.sensors.network import SensorNetwork

__all__ = ["main"]


async def _run(broker: str, devices: int, rounds: int) -> None:
    async with SensorNetwork(broker, devices=devices) as network:
        await network.publish_rounds(rounds)
        faulty = next(iter(network.fleet.baselines))
        network.fleet.inject(faulty, 95.0)  # a stuck heater
        await network.publish_rounds(1)
        await network.drain()
        print(f"{len(network.fleet.published)} readings from {devices} devices on {broker}")
        for alert in network.detector.alerts:
            print(f"ALERT {alert.device_id}: {alert.celsius:.1f} °C, {alert.reason}")
        for device, average in network.aggregator.averages().items():
            print(f"{device}: average {average:.2f} °C over the last readings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidings.examples.sensors")
    parser.add_argument("--broker", default="sqlite:///./tidings-sensors.db", help="broker URL")
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.broker, args.devices, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
