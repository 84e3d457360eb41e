from __future__ import annotations

from tidings._keys import KeySequencer


def first_letter(item: str) -> str:
    return item[0]


def test_first_item_of_a_key_runs_later_ones_wait_in_order() -> None:
    keys: KeySequencer[str] = KeySequencer(first_letter)
    assert keys.admit("k", "a")
    assert not keys.admit("k", "b")
    assert not keys.admit("k", "c")
    assert keys.admit("other", "x")
    assert keys.finish("k") == "b"
    assert keys.finish("k") == "c"
    assert keys.finish("k") is None
    assert keys.admit("k", "d")  # the key was freed


def test_a_retry_keeps_the_key_until_its_redelivery_comes_back_first() -> None:
    keys: KeySequencer[str] = KeySequencer(first_letter)
    assert keys.admit("k", "a1")
    assert not keys.admit("k", "b")
    assert keys.finish("k", retry_id="a") is None  # b keeps waiting
    assert not keys.admit("k", "c")
    assert keys.admit("k", "a2")  # the redelivery of a overtakes b and c
    assert keys.finish("k") == "b"
    assert keys.finish("k") == "c"
    assert keys.finish("k") is None
    assert len(keys) == 0


def test_revoke_drops_lost_items_and_frees_lanes_whose_retry_went_elsewhere() -> None:
    keys: KeySequencer[str] = KeySequencer(first_letter)
    keys.admit("k", "a1")
    keys.admit("k", "b")
    keys.finish("k", retry_id="a")
    keys.admit("j", "x")
    keys.admit("j", "y")
    dropped, runnable = keys.revoke(lambda item: item in {"b", "y"}, lambda i: i == "a")
    assert sorted(dropped) == ["b", "y"]
    assert runnable == []
    assert keys.admit("k", "new")  # k was freed
    assert keys.finish("j") is None  # x still ran; y is gone


def test_revoking_a_retry_lets_the_next_kept_item_run() -> None:
    keys: KeySequencer[str] = KeySequencer(first_letter)
    keys.admit("k", "a1")
    keys.admit("k", "b")
    keys.finish("k", retry_id="a")
    dropped, runnable = keys.revoke(lambda item: False, lambda i: i == "a")
    assert dropped == [] and runnable == ["b"]
    assert not keys.admit("k", "c")  # b runs now: c waits
    assert keys.finish("k") == "c"
