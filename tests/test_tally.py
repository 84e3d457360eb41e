from __future__ import annotations

from tidings._tally import DURATION_BUCKETS, EventTally, Tally


def test_a_duration_on_a_bound_counts_in_that_bucket_and_every_later_one() -> None:
    tally = EventTally()
    tally.observe(0.0)
    tally.observe(0.005)  # a bound: Prometheus buckets include their upper bound
    tally.observe(0.0051)
    tally.observe(60.0)  # above every bound
    buckets = dict(tally.cumulative())
    assert list(buckets) == [*map(str, DURATION_BUCKETS), "+Inf"]
    assert buckets["0.001"] == 1
    assert buckets["0.005"] == 2
    assert buckets["0.01"] == 3
    assert buckets["30.0"] == 3
    assert buckets["+Inf"] == 4
    assert tally.seconds == 0.005 + 0.0051 + 60.0


def test_the_tally_of_a_key_is_made_once() -> None:
    tally = Tally()
    first = tally.event(("jobs", "Job", "workers"))
    first.handled += 1
    assert tally.event(("jobs", "Job", "workers")) is first
    assert tally.event(("jobs", "Job", "other")) is not first
    assert first.handled == 1
