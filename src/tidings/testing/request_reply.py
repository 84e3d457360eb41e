"""Request/reply on any broker: replies matched to their requests, failures, timeouts.

Mixed into :class:`~tidings.testing.semantics.AppSemantics`, so every adapter
runs them. A requesting App and an answering App are built on separate
clients made by the suite's ``broker_factory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tidings.app import App
from tidings.broker import Broker
from tidings.context import Context
from tidings.errors import Reject, RequestFailed, RequestTimeout
from tidings.event import Event
from tidings.retry import RetryPolicy

__all__ = ["RequestReplySemantics"]

BrokerFactory = Callable[[], Broker]


@dataclass
class Quote:
    cart: str
    total: int


class RequestReplySemantics:
    """Request/reply rules (``docs/request-reply.md``); needs BrokerConformance's fixtures."""

    patience: float = 10.0

    def _pair(self, broker_factory: BrokerFactory, names: Any) -> tuple[App, App]:
        """(requester, responder): two Apps, each on its own client of the broker."""
        return App(names("asker"), broker=broker_factory()), App(
            names("answerer"), broker=broker_factory()
        )

    async def test_a_returned_value_is_the_reply(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("price")
        asker, answerer = self._pair(broker_factory, names)

        @answerer.subscribe(topic, group=names("pricing"), replies=True)
        async def price(data: dict[str, Any]) -> Quote:
            return Quote(cart=data["cart"], total=sum(data["items"]))

        async with answerer, asker:
            request = asker.event({"cart": "c1", "items": [2, 3]}, type="PriceCart")
            reply = await asker.request(
                request, topic=topic, reply_type=Quote, timeout=self.patience
            )
        assert reply.data == Quote(cart="c1", total=5)
        assert reply.type == "Quote"
        assert reply.causationid == request.id
        assert reply.correlationid == request.id  # the request started the conversation
        assert asker.requests.answered == 1 and asker.requests.outstanding == 0

    async def test_ctx_reply_answers_and_the_return_value_is_a_follow_up(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        topic, audit = names("stock"), names("audit")
        asker, answerer = self._pair(broker_factory, names)
        answerer.route("StockChecked", audit)

        @answerer.subscribe(topic, group=names("stock"))
        async def check(data: dict[str, Any], ctx: Context) -> Event:
            assert ctx.replyto is not None
            ctx.reply({"sku": data["sku"], "available": 7})
            return answerer.event({"sku": data["sku"]}, type="StockChecked")

        reader = await (await open_broker()).subscribe([audit], names("reader"))
        async with answerer, asker:
            reply = await asker.request(
                {"sku": "A-1"}, topic=topic, type="CheckStock", correlationid="conv-9"
            )
            followed: list[Any] = []
            deadline = asyncio.get_running_loop().time() + self.patience
            while not followed and asyncio.get_running_loop().time() < deadline:
                followed += await reader.fetch(10, 0.2)
        assert reply.type == "CheckStock.reply"  # a plain value is typed after the request
        assert reply.data == {"sku": "A-1", "available": 7}
        assert reply.correlationid == "conv-9"
        (d,) = followed
        assert asker.codec.decode(d.value, d.headers).type == "StockChecked"

    async def test_a_request_that_fails_for_good_raises_request_failed(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("pay")
        asker, answerer = self._pair(broker_factory, names)
        attempts: list[int] = []

        @answerer.subscribe(
            topic,
            group=names("pay"),
            retry=RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02),
        )
        async def pay(data: dict[str, Any], ctx: Context) -> dict[str, Any]:
            attempts.append(ctx.attempt)
            if data["amount"] < 0:
                raise Reject("negative amount")
            raise RuntimeError("card network down")

        async with answerer, asker:
            with pytest.raises(RequestFailed) as rejected:
                await asker.request({"amount": -1}, topic=topic, type="Pay", timeout=self.patience)
            with pytest.raises(RequestFailed) as failed:
                await asker.request({"amount": 5}, topic=topic, type="Pay", timeout=self.patience)
        assert rejected.value.error_type == "Reject"
        assert rejected.value.error == "negative amount"
        assert failed.value.error_type == "RuntimeError"
        assert "card network down" in str(failed.value) and topic in str(failed.value)
        assert attempts == [1, 1, 2]  # the rejection once, the failure through its retries

    async def test_no_reply_in_time_raises_and_a_late_reply_is_dropped(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("slow")
        asker, answerer = self._pair(broker_factory, names)
        release = asyncio.Event()

        @answerer.subscribe(topic, group=names("slow"))
        async def slow(data: dict[str, Any]) -> dict[str, Any]:
            if data["n"] == 1:
                await release.wait()
            return {"n": data["n"]}

        async with answerer, asker:
            with pytest.raises(RequestTimeout) as timed_out:
                await asker.request({"n": 1}, topic=topic, type="Slow", timeout=0.3)
            assert topic in str(timed_out.value)
            assert timed_out.value.request_id in str(timed_out.value)
            release.set()
            deadline = asyncio.get_running_loop().time() + self.patience
            while asker.requests.late < 1:
                assert asyncio.get_running_loop().time() < deadline, "the late reply never came"
                await asyncio.sleep(0.02)
            reply = await asker.request({"n": 2}, topic=topic, type="Slow", timeout=self.patience)
        assert asker.requests.late == 1
        assert asker.requests.timed_out == 1
        assert reply.data == {"n": 2}

    async def test_a_thousand_requests_in_flight_each_get_their_own_reply(
        self, broker_factory: BrokerFactory, names: Any
    ) -> None:
        topic = names("many")
        asker, answerer = self._pair(broker_factory, names)

        @answerer.subscribe(topic, group=names("many"), concurrency=32, ordering="none")
        async def double(data: dict[str, Any]) -> dict[str, Any]:
            return {"twice": data["n"] * 2}

        async with answerer, asker:
            replies = await asyncio.gather(
                *(
                    asker.request(
                        {"n": n}, topic=topic, type="Double", key=f"k{n % 16}", timeout=60.0
                    )
                    for n in range(1000)
                )
            )
        assert [r.data["twice"] for r in replies] == [n * 2 for n in range(1000)]
        assert asker.requests.answered == 1000
        assert asker.requests.late == 0 and asker.requests.unmatched == 0

    async def test_an_event_without_replyto_gets_no_reply_and_routes_as_usual(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        source, target = names("plain"), names("plain-out")
        app = App(names("plain"), broker=broker_factory())
        app.route("Done", target)

        @app.subscribe(source, group=names("plain"))
        async def handle(data: dict[str, Any], ctx: Context) -> Event:
            assert ctx.reply({"ignored": True}) is False  # not a request
            return app.event({"n": data["n"]}, type="Done")

        reader = await (await open_broker()).subscribe([target], names("reader"))
        async with app:
            await app.publish({"n": 1}, topic=source, type="Plain")
            got: list[Any] = []
            deadline = asyncio.get_running_loop().time() + self.patience
            while not got and asyncio.get_running_loop().time() < deadline:
                got += await reader.fetch(10, 0.2)
        assert app.codec.decode(got[0].value, got[0].headers).type == "Done"
        assert app.requests.answered == 0

    async def test_exactly_once_replies_commit_with_the_ack(
        self, broker_factory: BrokerFactory, open_broker: Any, names: Any
    ) -> None:
        broker = await open_broker()
        if not broker.capabilities.exactly_once:
            pytest.skip(f"{type(broker).__name__} does not declare capability 'exactly_once'")
        topic = names("eo")
        asker, answerer = self._pair(broker_factory, names)

        @answerer.subscribe(topic, group=names("eo"), delivery="exactly_once")
        async def answer(data: dict[str, Any]) -> dict[str, Any]:
            return {"n": data["n"] + 1}

        async with answerer, asker:
            reply = await asker.request({"n": 1}, topic=topic, type="Inc", timeout=self.patience)
        assert reply.data == {"n": 2}
