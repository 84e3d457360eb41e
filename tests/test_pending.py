from __future__ import annotations

from tidings.brokers._pending import PendingQueue


def test_due_offsets_come_out_earliest_first_then_by_offset() -> None:
    queue = PendingQueue()
    queue.push(2.0, 7)
    queue.push(1.0, 9)
    queue.push(1.0, 3)
    assert queue.next_due() == 1.0
    assert queue.pop_due(now=1.5, limit=10) == [3, 9]
    assert queue.pop_due(now=1.5, limit=10) == []
    assert queue.pop_due(now=2.0, limit=1) == [7]
    assert len(queue) == 0 and queue.next_due() is None


def test_a_barrier_holds_later_offsets_of_its_key_until_it_is_delivered() -> None:
    queue = PendingQueue()
    queue.add_barrier("k", due=5.0, offset=10)
    assert queue.barrier("k", 11) == 5.0  # later in the key: wait for the redelivery
    assert queue.barrier("k", 10) is None  # the redelivery itself
    assert queue.barrier("k", 4) is None  # earlier offsets are not held
    assert queue.barrier("other", 11) is None
    assert queue.barrier(None, 11) is None
    queue.delivered("k", 9)
    assert queue.barrier("k", 11) == 5.0  # an earlier offset does not lift it
    queue.delivered("k", 10)
    assert queue.barrier("k", 11) is None


def test_barriers_of_one_key_merge_to_the_latest_time_and_offset() -> None:
    queue = PendingQueue()
    queue.add_barrier("k", due=5.0, offset=10)
    queue.add_barrier("k", due=3.0, offset=12)
    assert queue.barrier("k", 13) == 5.0
    queue.delivered("k", 10)
    assert queue.barrier("k", 13) == 5.0  # still held until offset 12 goes
    queue.clear()
    assert queue.barrier("k", 13) is None and len(queue) == 0
