"""IoT sensors: devices publish temperature readings; consumers react on their own.

* :mod:`.devices`: simulated devices, one reading per device per round;
* :mod:`.detector`: an anomaly detector with per-device state, raising ``TemperatureAlert``;
* :mod:`.aggregator`: rolling averages per device.

:class:`~.network.SensorNetwork` runs them in one process on a broker URL
(the embedded broker by default: ``python -m tidings.examples.sensors``).
See ``docs/examples.md``.
"""
