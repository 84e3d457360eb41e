"""UUIDv7 generation (RFC 9562): 48-bit Unix ms timestamp, then random bits.

Ids from one process are strictly increasing: within one millisecond the
12-bit ``rand_a`` field is used as a counter (RFC 9562, method 1).
"""

from __future__ import annotations

import os
import random
import time

_rng = random.Random(os.urandom(32))
_last_ms = 0
_counter = 0


def _reseed() -> None:
    _rng.seed(os.urandom(32))


# A forked child must not repeat its parent's random stream.
os.register_at_fork(after_in_child=_reseed)


def uuid7() -> str:
    """Return a new UUIDv7 as its canonical 36-character string."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms = ms
        _counter = _rng.getrandbits(11)  # leave headroom so the counter rarely overflows
    else:
        _counter += 1
        if _counter > 0xFFF:
            _last_ms += 1
            _counter = 0
        ms = _last_ms
    value = (
        (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | _rng.getrandbits(62)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str) -> int:
    """Return the Unix millisecond timestamp embedded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)
