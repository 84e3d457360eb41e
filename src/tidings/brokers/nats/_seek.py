"""Moving a group (:class:`~tidings.broker.Seekable`): its consumers are made again.

JetStream has no "move this durable consumer" call on every server version, so
each partition's consumer is deleted and created again with the new start
(``deliver_policy`` all / new / by_start_sequence / by_start_time), keeping its
ack wait and delivery limit. Members of this process stop pulling first and
forget what they held (core is told through ``on_revoke``), so nothing from
before the seek reaches them afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime

from nats.js import api
from nats.js.errors import NotFoundError
from nats.js.manager import JetStreamManager

from tidings.broker import Delivery, Position
from tidings.brokers.nats._streams import Topic, consumer_config, consumer_name
from tidings.brokers.nats._subscription import NatsSubscription
from tidings.errors import ConfigurationError

__all__ = ["seek_group"]


def _start(position: Position) -> tuple[api.DeliverPolicy, int | None, datetime | None]:
    if position == "beginning":
        return api.DeliverPolicy.ALL, None, None
    if position == "end":
        return api.DeliverPolicy.NEW, None, None
    if isinstance(position, datetime):
        if position.utcoffset() is None:
            raise ConfigurationError("a seek time must be timezone-aware")
        return api.DeliverPolicy.BY_START_TIME, None, position
    if isinstance(position, int) and not isinstance(position, bool):
        return api.DeliverPolicy.BY_START_SEQUENCE, max(position, 0) + 1, None
    raise ConfigurationError(f"cannot seek to {position!r}")


async def seek_group(
    jsm: JetStreamManager,
    topic: Topic,
    group: str,
    position: Position,
    local: Sequence[NatsSubscription],
) -> None:
    policy, sequence, when = _start(position)
    mine = [(sub, s) for sub in local for s in sub.sources if s.topic == topic.name]
    for sub, source in mine:
        await sub.quiesce(source)
    lost: dict[NatsSubscription, list[Delivery]] = {}
    backlog: dict[int, int | None] = {}
    for sub, source in mine:
        lost.setdefault(sub, []).extend(sub.forget(source))
    try:
        for partition in range(topic.partitions):
            name = consumer_name(group, partition)
            ack_wait, max_deliver = 30.0, None
            with contextlib.suppress(NotFoundError):
                info = await jsm.consumer_info(topic.stream, name)
                ack_wait = info.config.ack_wait or ack_wait
                limit = info.config.max_deliver
                max_deliver = limit if limit is not None and limit > 0 else None
                await jsm.delete_consumer(topic.stream, name)
            config = consumer_config(
                topic,
                group,
                partition,
                ack_wait=ack_wait,
                max_deliver=max_deliver,
                start=policy,
                start_sequence=sequence,
                start_time=when,
            )
            backlog[partition] = (await jsm.add_consumer(topic.stream, config)).num_pending
    finally:
        for sub, source in mine:
            source.backlog = backlog.get(source.partition)
            source.releasing = False
            sub.arrived.set()
        for sub, deliveries in lost.items():
            if deliveries and sub.on_revoke is not None:
                sub.on_revoke(deliveries)
