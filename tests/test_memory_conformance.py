from __future__ import annotations

import pytest

from tidings.brokers.memory import MemoryBroker, MemoryHub
from tidings.testing.conformance import BrokerConformance


class TestMemoryBroker(BrokerConformance):
    @pytest.fixture
    def broker_factory(self) -> object:
        hub = MemoryHub()
        return lambda: MemoryBroker(hub)
