from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _nats_server import delete_streams, system_url

from tidings.brokers.nats import NatsBroker
from tidings.testing.conformance import BrokerConformance


class TestNatsBroker(BrokerConformance):
    rebalance_delay = 1.0

    @pytest.fixture
    async def broker_factory(self, names: Callable[[str], str]) -> AsyncIterator[Any]:
        url = system_url()
        made: list[NatsBroker] = []

        def make() -> NatsBroker:
            made.append(NatsBroker.from_url(url))
            return made[-1]

        yield make
        for broker in made:  # Apps given a broker object leave closing it to its owner
            await broker.close()
        await delete_streams(url, names("x").rsplit("-", 1)[1])
