from __future__ import annotations

from pathlib import Path

import pytest

from tidings.brokers.sqlite import SqliteBroker
from tidings.testing.conformance import BrokerConformance


class TestSqliteBroker(BrokerConformance):
    rebalance_delay = 0.5

    @pytest.fixture
    def broker_factory(self, tmp_path: Path) -> object:
        path = str(tmp_path / "conformance.db")
        return lambda: SqliteBroker(path, session_timeout=3.0, heartbeat_interval=0.2)
