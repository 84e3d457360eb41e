from __future__ import annotations

import itertools
import os
import re
import select
import threading
import time
import uuid
import warnings

import pytest

from tidings._uuid7 import uuid7, uuid7_time_ms

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def increasing(values: list[str]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def _fields(value: str) -> tuple[int, int, int, int]:
    """(unix ms, version, rand_a counter, variant) of a UUIDv7 string."""
    number = int(value.replace("-", ""), 16)
    return number >> 80, (number >> 76) & 0xF, (number >> 64) & 0xFFF, (number >> 62) & 0b11


def test_canonical_form_version_and_variant() -> None:
    for _ in range(1000):
        value = uuid7()
        assert CANONICAL.match(value)
        _, version, _, variant = _fields(value)
        assert version == 7
        assert variant == 0b10
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_ten_thousand_ids_strictly_increase_as_strings() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert increasing(ids)


def test_timestamp_is_the_current_millisecond() -> None:
    for _ in range(50):
        before = time.time_ns() // 1_000_000
        value = uuid7()
        after = time.time_ns() // 1_000_000
        # A counter overflow may push an id at most a few ms ahead of the clock.
        assert before <= uuid7_time_ms(value) <= after + 5
        assert uuid7_time_ms(value) == _fields(value)[0]


def test_threads_get_distinct_ids_each_increasing() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(uuid7() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    everything = [value for out in results for value in out]
    assert len(everything) == 8000
    assert len(set(everything)) == 8000
    for out in results:
        assert increasing(out)


def test_time_ms_reads_the_embedded_timestamp() -> None:
    assert uuid7_time_ms("01890a5d-ac96-774b-bcce-b302099a8057") == 0x01890A5DAC96


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_repeat_the_parents_ids() -> None:
    uuid7()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking while other threads (of other tests) live.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            payload = "\n".join(uuid7() for _ in range(200)).encode()
            os.write(write_end, payload)
        finally:
            os._exit(0)
    os.close(write_end)
    parent_ids = [uuid7() for _ in range(200)]
    chunks: list[bytes] = []
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = b"".join(chunks).decode().split("\n")
    assert len(child_ids) == 200
    assert all(CANONICAL.match(v) for v in child_ids)
    assert not set(child_ids) & set(parent_ids)
