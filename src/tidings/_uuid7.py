"""UUIDv7 generation (RFC 9562): 48-bit Unix ms timestamp, then random bits.

Ids from one process are strictly increasing, across threads too: within one
millisecond the 12-bit ``rand_a`` field is used as a counter (RFC 9562,
method 1).
"""

from __future__ import annotations

import os
import random
import threading
import time

_rng = random.Random(os.urandom(32))
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _after_fork_in_child() -> None:
    global _lock
    # A forked child must not repeat its parent's random stream, and must not
    # inherit a lock that another (now vanished) thread was holding.
    _rng.seed(os.urandom(32))
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


_prefix_ms = -1
_prefix = ""


def uuid7() -> str:
    """Return a new UUIDv7 as its canonical 36-character string."""
    global _last_ms, _counter, _prefix_ms, _prefix
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _rng.getrandbits(11)  # leave headroom so the counter rarely overflows
        else:
            # Same millisecond, or the clock stepped back: stay on the last one.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
        random_bits = _rng.getrandbits(62)
        if ms != _prefix_ms:
            # Many ids share a millisecond: format its 48 bits (and the version) once.
            h = f"{ms:012x}"
            _prefix = f"{h[:8]}-{h[8:]}-7"
            _prefix_ms = ms
        prefix = _prefix
    tail = f"{(0b10 << 62) | random_bits:016x}"
    return f"{prefix}{counter:03x}-{tail[:4]}-{tail[4:]}"


def uuid7_time_ms(value: str) -> int:
    """Return the Unix millisecond timestamp embedded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)
