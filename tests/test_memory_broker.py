from __future__ import annotations

import pytest

from tidings import ConfigurationError, Message
from tidings.brokers import from_url, redact_url, schemes
from tidings.brokers._partitioning import partition_for
from tidings.brokers.memory import MemoryBroker


def test_memory_urls_with_one_name_share_a_hub() -> None:
    a = from_url("memory://shared-x")
    b = from_url("memory://shared-x")
    c = from_url("memory://other-x")
    assert isinstance(a, MemoryBroker) and isinstance(b, MemoryBroker)
    assert isinstance(c, MemoryBroker)
    assert a.hub is b.hub
    assert a.hub is not c.hub


def test_partitions_from_url() -> None:
    broker = from_url("memory://parts-x?partitions=7")
    assert isinstance(broker, MemoryBroker)
    assert broker.hub.default_partitions == 7
    with pytest.raises(ConfigurationError):
        from_url("memory://bad-x?partitions=zero")
    with pytest.raises(ConfigurationError):
        from_url("memory://bad-y?partitions=0")


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="memory"):
        from_url("carrier-pigeon://x")
    with pytest.raises(ConfigurationError, match="no scheme"):
        from_url("localhost:9092")
    assert "memory" in schemes()


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url("amqp://guest:secret@host:5672/") == "amqp://guest:***@host:5672/"
    assert redact_url("memory://") == "memory://"


def test_partition_for_is_stable_and_spreads_keys() -> None:
    assert partition_for("ORD-1", 8) == partition_for("ORD-1", 8)
    used = {partition_for(f"k{i}", 8) for i in range(200)}
    assert used == set(range(8))
    assert partition_for(None, 4, fallback=6) == 2


async def test_keyless_messages_rotate_over_partitions() -> None:
    broker = MemoryBroker(partitions=3)
    await broker.connect()
    await broker.publish("t", [Message(b"x") for _ in range(6)])
    partitions = [p for p, _, _ in broker.hub.records("t")]
    assert sorted(partitions) == [0, 0, 1, 1, 2, 2]
    await broker.close()


async def test_hub_idle_tracks_unsettled_messages_of_live_groups() -> None:
    broker = MemoryBroker()
    await broker.connect()
    sub = await broker.subscribe(["t"], "g")
    assert broker.hub.is_idle()
    await broker.publish("t", [Message(b"x")])
    assert not broker.hub.is_idle()
    (d,) = await sub.fetch(10, 1.0)
    assert not broker.hub.is_idle()
    await d.ack()
    assert broker.hub.is_idle()
    await broker.close()
