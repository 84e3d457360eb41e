"""The shop's knobs, and where its services find them when started one by one.

In one process (``tidings demo``) the runner passes a :class:`ShopConfig`;
services started with ``tidings run`` read it from the environment:
``SHOP_FAIL_RATE`` (share of payments that fail, default 0.1),
``SHOP_TRANSIENT_RATE`` (share whose first attempt fails, default 0.05) and
``SHOP_OUTBOX`` (the mailer's outbox file; default: next to the embedded
database, see :func:`outbox_for`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tidings.errors import ConfigurationError

__all__ = ["ShopConfig", "fraction", "outbox_for"]

DEFAULT_OUTBOX = "shop-outbox.jsonl"


@dataclass(frozen=True)
class ShopConfig:
    fail_rate: float = 0.1
    """Share of payments declined for good (the order is cancelled, stock released)."""
    transient_rate: float = 0.05
    """Share of payments whose first attempt times out (retried, then decided)."""
    outbox: Path | None = None
    """Where the mailer appends its emails; None: derived from the broker URL."""

    def __post_init__(self) -> None:
        for name in ("fail_rate", "transient_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be between 0 and 1, got {value}")

    @classmethod
    def from_env(cls) -> ShopConfig:
        try:
            return cls(
                fail_rate=float(os.environ.get("SHOP_FAIL_RATE", "0.1")),
                transient_rate=float(os.environ.get("SHOP_TRANSIENT_RATE", "0.05")),
                outbox=Path(os.environ["SHOP_OUTBOX"]) if os.environ.get("SHOP_OUTBOX") else None,
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad SHOP_* setting: {exc}") from exc


def outbox_for(broker_url: str | None) -> Path:
    """The default outbox of a shop on ``broker_url``.

    On the embedded broker it sits next to the database (``shop.db`` ->
    ``shop-outbox.jsonl``), so every service sharing the file finds it;
    elsewhere it is ``./shop-outbox.jsonl``.
    """
    if broker_url and broker_url.startswith("sqlite:"):
        path = Path(unquote(urlsplit(broker_url).path)[1:])
        return path.with_name(f"{path.stem}-outbox.jsonl")
    return Path(DEFAULT_OUTBOX)


def fraction(order_id: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for an order: same id, same answer.

    Decisions made from it (does this payment fail?) are the same on every
    redelivery and in every process.
    """
    return zlib.crc32(f"{salt}:{order_id}".encode()) / 2**32
