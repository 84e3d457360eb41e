"""Time-ordered ids (UUIDv7, RFC 9562) and random bits for trace ids.

``uuid_utils`` (Rust) generates the UUIDv7s: strictly increasing within a
process (a counter in ``rand_a`` within one millisecond), safe across threads
and after ``fork``, and about five times faster than pure Python, which
matters since every event gets one.
"""

from __future__ import annotations

import os
import random

import uuid_utils

__all__ = ["random_bits", "uuid7", "uuid7_time_ms"]

_rng = random.Random(os.urandom(32))
# A forked child must not repeat its parent's random stream.
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def uuid7() -> str:
    """Return a new UUIDv7 as its canonical 36-character string."""
    return str(uuid_utils.uuid7())


def uuid7_time_ms(value: str) -> int:
    """Return the Unix millisecond timestamp embedded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)


def random_bits(bits: int) -> int:
    """A random non-zero integer of ``bits`` bits (W3C trace ids must not be zero)."""
    return _rng.getrandbits(bits) or 1
