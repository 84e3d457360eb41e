"""The SNS/SQS adapter against moto in server mode (started here, on a free port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from _moto import Moto

from tidings.brokers.sqs import SqsBroker
from tidings.testing.conformance import BrokerConformance


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto()
    server.start()
    yield server
    server.stop()


def _no_history(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "SNS keeps no history: a group's queue receives what is published once it exists, "
        "so an event published before the group was created never reaches it"
    )


#: A receive's long poll is short, so that closing is quick in the tests; moto slows down
#: as a queue fills (it counts every message on each send), hence the long publish timeout.
FAST = "wait=1&publish_timeout=60"


def _moto_too_slow(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip(
        "moto's SQS spends time proportional to a queue's length on every send and receive "
        "(it recomputes each message's visibility): thousands of queued events take minutes"
    )


#: Tests of thousands of events in one queue (see _moto_too_slow).
_VOLUME = (
    "test_many_messages",
    "test_large_fetches_skip_nothing",
    "test_a_thousand_requests_in_flight_each_get_their_own_reply",
)


def _no_order(self: Any, *args: Any, **kwargs: Any) -> None:
    pytest.skip("standard SNS topics and SQS queues promise no order; the FIFO suite runs it")


async def _factory(url: str) -> AsyncIterator[Callable[[], SqsBroker]]:
    """Brokers of ``url``, closed at the end (Apps given a broker leave that to its owner)."""
    made: list[SqsBroker] = []

    def make() -> SqsBroker:
        broker = SqsBroker.from_url(url)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


class TestSnsSqs(BrokerConformance):
    patience = 20.0
    test_group_less_reader_sees_what_is_published_while_open = _no_history
    test_a_rebalance_during_retry_holds_strands_no_key = _no_order
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        async for make in _factory(moto.url("sns+sqs", FAST)):
            yield make


class TestSnsSqsFifo(BrokerConformance):
    patience = 20.0
    test_group_less_reader_sees_what_is_published_while_open = _no_history
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        async for make in _factory(moto.url("sns+sqs", FAST + "&fifo=true")):
            yield make


class TestSqsQueues(BrokerConformance):
    patience = 20.0
    locals().update(dict.fromkeys(_VOLUME, _moto_too_slow))
    test_large_fetches_skip_nothing = _no_order
    test_a_rebalance_during_retry_holds_strands_no_key = _no_order

    @pytest.fixture
    async def broker_factory(self, moto: Moto) -> AsyncIterator[Callable[[], SqsBroker]]:
        async for make in _factory(moto.url("sqs", FAST)):
            yield make
