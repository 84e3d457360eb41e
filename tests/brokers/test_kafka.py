"""The Kafka adapter against a real Kafka-protocol server (tansu): the shared suites, then Kafka's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka_server import Tansu, tansu  # noqa: F401 - the session fixture

from tidings.broker import Broker
from tidings.brokers.kafka import KafkaBroker
from tidings.testing.conformance import BrokerConformance


class TestKafkaBroker(BrokerConformance):
    patience = 15.0
    rebalance_delay = 1.0

    @pytest.fixture
    def broker_factory(self, tansu: Tansu) -> Callable[[], Broker]:  # noqa: F811
        url = tansu.url("session_timeout=3&heartbeat_interval=0.5")
        return lambda: KafkaBroker.from_url(url)
