"""The member's partition state without a server: local redelivery, key barriers, fencing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from tidings.brokers.kafka._partition import KafkaDelivery, Partition


@dataclass
class Record:
    """The fields of a consumer record the partition reads (as aiokafka returns them)."""

    offset: int
    key: bytes | None
    value: bytes = b"v"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


def _partition(seen_until: int = 0) -> tuple[Partition, list[float]]:
    wakes: list[float] = []
    return Partition("t", 0, "g", seen_until, wakes.append), wakes


def _admit(part: Partition, offset: int, key: str | None) -> KafkaDelivery | None:
    return part.admit(Record(offset, None if key is None else key.encode()))


async def test_a_nack_holds_later_records_of_its_key_only() -> None:
    part, wakes = _partition()
    first = _admit(part, 0, "a")
    assert first is not None and first.attempt == 1
    await first.nack(0.2)
    assert wakes, "the member is woken when the redelivery is due"
    assert _admit(part, 1, "a") is None, "a later record of the key waits behind it"
    other = _admit(part, 2, "b")
    assert other is not None, "other keys flow"
    out: list[KafkaDelivery] = []
    part.take_due(time.time(), 10, out)
    assert out == []
    part.take_due(time.time() + 1, 10, out)
    assert [(d.offset, d.attempt) for d in out] == [(0, 2), (1, 1)]
    assert out[0].id == first.id


async def test_the_watermark_never_passes_an_unsettled_record() -> None:
    part, _ = _partition()
    deliveries = [_admit(part, offset, f"k{offset}") for offset in range(3)]
    assert all(d is not None for d in deliveries)
    first, second, third = (d for d in deliveries if d is not None)
    await third.ack()
    await second.ack()
    assert part.mark is not None and part.mark.committed == 0
    await first.ack()
    assert part.mark.committed == 3


async def test_a_lost_partition_reports_its_deliveries_and_fences_them() -> None:
    part, _ = _partition()
    held = _admit(part, 0, "a")
    nacked = _admit(part, 1, "b")
    assert held is not None and nacked is not None
    await nacked.nack(5.0)
    lost = part.lose()
    assert [d.offset for d in lost] == [0, 1]
    assert all(d.settled for d in lost)
    await held.ack()  # fenced: ignored
    assert part.mark is not None and part.mark.committed == 0


def test_records_handed_out_before_count_from_attempt_two() -> None:
    part, _ = _partition(seen_until=2)
    attempts = [d.attempt for d in (_admit(part, o, None) for o in range(4)) if d is not None]
    assert attempts == [2, 2, 1, 1]


def test_a_log_that_went_back_restarts_the_watermark() -> None:
    part, _ = _partition()
    assert _admit(part, 50, None) is not None
    assert _admit(part, 0, None) is not None  # the server lost the log (an offset reset)
    assert part.mark is not None and part.mark.committed == 0


@pytest.mark.parametrize("raw", [[("h", None)], [("h", b"\xff")]])
def test_odd_header_values_from_other_clients_decode(raw: list[tuple[str, bytes | None]]) -> None:
    from tidings.brokers.kafka._binding import message_headers

    assert set(message_headers(raw)) == {"h"}
