from __future__ import annotations

from tidings.brokers._watermark import Watermark


def test_in_order_settlement_moves_the_position_one_by_one() -> None:
    mark = Watermark(5)
    mark.settle(5)
    mark.settle(6)
    assert mark.committed == 7
    assert len(mark) == 0


def test_the_position_waits_for_the_oldest_unsettled_offset() -> None:
    mark = Watermark(0)
    mark.settle(2)
    mark.settle(1)
    assert mark.committed == 0 and len(mark) == 2
    assert mark.committed_if_settled(0) == 3
    assert mark.committed == 0  # asking does not move it
    mark.settle(0)
    assert mark.committed == 3 and len(mark) == 0


def test_removed_offsets_count_as_settled() -> None:
    mark = Watermark(0)
    mark.skip(1, 10)  # offsets 1..9 were removed by retention
    assert mark.committed == 0
    mark.settle(0)
    assert mark.committed == 10
    mark.skip(10, 12)
    assert mark.committed == 12


def test_a_reset_forgets_what_was_settled_ahead() -> None:
    mark = Watermark(0)
    mark.settle(3)
    mark.skip(5, 8)
    mark.reset(2)
    assert mark.committed == 2 and len(mark) == 0
    mark.settle(2)
    assert mark.committed == 3
