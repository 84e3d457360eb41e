"""The suites on a memory broker that schedules nothing (``memory://?delay=none``).

Broker-level delay tests skip (the capability is not declared); the App-level
ones run, so core's emulation of delayed publish and delayed retries is held
to the same rules as a broker's own timers.
"""

from __future__ import annotations

import pytest

from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.testing.conformance import BrokerConformance


class TestUnscheduledMemoryBroker(BrokerConformance):
    @pytest.fixture
    def broker_factory(self) -> object:
        hub = MemoryHub()
        return lambda: MemoryBroker(hub, scheduled=False)


def test_the_url_option_turns_scheduling_off() -> None:
    broker = MemoryBroker.from_url("memory://unscheduled-x?delay=none")
    assert not broker.capabilities.delayed_publish
    assert not broker.capabilities.delayed_redelivery
