"""The shop's knobs, and where its services find them when started one by one.

In one process (``tidings demo``) the runner passes a :class:`ShopConfig`;
services started with ``tidings run`` read it from the environment:
``SHOP_FAIL_RATE`` (share of payments that fail, default 0.1),
``SHOP_TRANSIENT_RATE`` (share whose first attempt fails, default 0.05),
``SHOP_OUTBOX`` (the mailer's outbox file; default: next to the embedded
database, see :func:`outbox_for`), ``SHOP_PAYMENT_TIMEOUT`` (seconds the
order saga waits for a payment, default 10), ``SHOP_STALL_RATE`` and
``SHOP_STALL`` (share of payments the gateway answers only after that many
seconds; default none) and ``SHOP_SAGAS`` (the database of the saga's state,
see :func:`sagas_for`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tidings.errors import ConfigurationError

__all__ = ["ShopConfig", "fraction", "outbox_for", "sagas_for"]

DEFAULT_OUTBOX = "shop-outbox.jsonl"
DEFAULT_SAGAS = "shop-sagas.db"


@dataclass(frozen=True)
class ShopConfig:
    fail_rate: float = 0.1
    """Share of payments declined for good (the order is cancelled, stock released)."""
    transient_rate: float = 0.05
    """Share of payments whose first attempt times out (retried, then decided)."""
    outbox: Path | None = None
    """Where the mailer appends its emails; None: derived from the broker URL."""
    payment_timeout: float = 10.0
    """Seconds the order saga waits for the payment's answer before cancelling the order."""
    stall_rate: float = 0.0
    """Share of payments the (simulated) gateway answers only after ``stall`` seconds."""
    stall: float = 0.0
    """How long a stalled payment takes; longer than ``payment_timeout`` makes it late."""
    sagas: str | None = None
    """The database of the order saga's state (a URL); None: see :func:`sagas_for`."""

    def __post_init__(self) -> None:
        for name in ("fail_rate", "transient_rate", "stall_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be between 0 and 1, got {value}")
        if self.payment_timeout <= 0 or self.stall < 0:
            raise ConfigurationError(
                f"payment_timeout must be > 0 and stall >= 0 seconds, got "
                f"{self.payment_timeout} and {self.stall}"
            )

    @classmethod
    def from_env(cls) -> ShopConfig:
        try:
            return cls(
                fail_rate=float(os.environ.get("SHOP_FAIL_RATE", "0.1")),
                transient_rate=float(os.environ.get("SHOP_TRANSIENT_RATE", "0.05")),
                outbox=Path(os.environ["SHOP_OUTBOX"]) if os.environ.get("SHOP_OUTBOX") else None,
                payment_timeout=float(os.environ.get("SHOP_PAYMENT_TIMEOUT", "10")),
                stall_rate=float(os.environ.get("SHOP_STALL_RATE", "0")),
                stall=float(os.environ.get("SHOP_STALL", "0")),
                sagas=os.environ.get("SHOP_SAGAS") or None,
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad SHOP_* setting: {exc}") from exc


def _database_path(broker_url: str) -> Path:
    return Path(unquote(urlsplit(broker_url).path)[1:])


def outbox_for(broker_url: str | None) -> Path:
    """The default outbox of a shop on ``broker_url``.

    On the embedded broker it sits next to the database (``shop.db`` ->
    ``shop-outbox.jsonl``), so every service sharing the file finds it;
    elsewhere it is ``./shop-outbox.jsonl``.
    """
    if broker_url and broker_url.startswith("sqlite:"):
        path = _database_path(broker_url)
        return path.with_name(f"{path.stem}-outbox.jsonl")
    return Path(DEFAULT_OUTBOX)


def sagas_for(broker_url: str | None) -> str | None:
    """Where the order saga keeps its state when ``SHOP_SAGAS`` does not say.

    On the embedded broker, a SQLite file next to its database (``shop.db``
    -> ``shop-sagas.db``; a file of its own, so that the saga's writes never
    wait for the broker's); on ``memory://`` (or no URL: a broker object),
    None: in memory, like the broker; on any other broker,
    ``./shop-sagas.db`` (set ``SHOP_SAGAS`` to a ``postgresql://`` URL to
    share it between hosts).
    """
    if not broker_url or broker_url.startswith("memory:"):
        return None
    if broker_url.startswith("sqlite:"):
        path = _database_path(broker_url)
        return f"sqlite:///{path.with_name(f'{path.stem}-sagas.db')}"
    return f"sqlite:///{DEFAULT_SAGAS}"


def fraction(order_id: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for an order: same id, same answer.

    Decisions made from it (does this payment fail?) are the same on every
    redelivery and in every process.
    """
    return zlib.crc32(f"{salt}:{order_id}".encode()) / 2**32
