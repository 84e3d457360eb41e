"""The partitioner of the in-process brokers (memory and the embedded one).

Partitioning belongs to each broker: Kafka keeps its own (murmur2), brokers
without partitions have none. memory:// and sqlite:// hash keys with CRC-32.
"""

from __future__ import annotations

import zlib

__all__ = ["partition_for"]


def partition_for(key: str | None, partitions: int, fallback: int = 0) -> int:
    """The partition of ``key`` among ``partitions``: a stable hash (CRC-32).

    Keyless messages go to ``fallback % partitions`` (callers rotate it).
    """
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode("utf-8")) % partitions
