"""Email service: sends an order confirmation for every ``OrderConfirmed``, exactly once.

Sending means appending one JSON line to an outbox file (no network). An
email is a side effect outside the broker, so it cannot be committed with the
ack: the mailer makes it idempotent instead. It remembers which orders were
mailed, keyed by order id, and rebuilds that memory from the outbox itself
when it starts, so a redelivery (after a failure or a restart) sends nothing
twice.

Run it alone with ``tidings run tidings.examples.shop.mailer:app``; the
outbox is ``SHOP_OUTBOX``, else next to the embedded database.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tidings import App, Event
from tidings.broker import Broker
from tidings.examples.shop._standalone import standalone
from tidings.examples.shop.config import ShopConfig, outbox_for
from tidings.examples.shop.events import ORDER_EVENTS, OrderConfirmed, prepare

__all__ = ["Mailer", "Outbox"]


class Outbox:
    """An append-only file of sent emails, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sent: set[str] | None = None
        self._torn = False

    @staticmethod
    def read(path: Path) -> Counter[str]:
        """How many emails each order got, as the file says (a torn last line is skipped)."""
        counts: Counter[str] = Counter()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return counts
        for line in lines:
            try:
                counts[str(json.loads(line)["order_id"])] += 1
            except (ValueError, KeyError, TypeError):
                continue
        return counts

    @property
    def sent(self) -> set[str]:
        """The orders mailed so far, read from the file on first use."""
        if self._sent is None:
            self._sent = set(self.read(self.path))
            self._torn = _torn(self.path)
        return self._sent

    def send(self, email: dict[str, str]) -> bool:
        """Append ``email`` unless its order was mailed already; True if it was sent now."""
        order_id = email["order_id"]
        if order_id in self.sent:
            return False
        line = json.dumps(email, separators=(",", ":")) + "\n"
        if self._torn:  # a crash cut the last line short: start on a new one
            line = "\n" + line
        with self.path.open("ab") as file:
            file.write(line.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        self._torn = False
        self.sent.add(order_id)
        return True


def _torn(path: Path) -> bool:
    """True if the file does not end with a newline (its writer died mid-line)."""
    try:
        with path.open("rb") as file:
            if file.seek(0, os.SEEK_END) == 0:
                return False
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except FileNotFoundError:
        return False


class Mailer:
    """The email service. ``sent`` and ``duplicates`` count emails sent and skipped."""

    def __init__(self, broker: str | Broker | None = None, outbox: Path | None = None) -> None:
        self.app = prepare(App("mailer", broker=broker))
        self._outbox_path = outbox or ShopConfig.from_env().outbox
        self._outbox: Outbox | None = None
        self.sent = 0
        self.duplicates = 0
        # A plain function: tidings runs it in a thread, so file I/O does not block the loop.
        self.app.add_subscription(self.send_confirmation, ORDER_EVENTS)

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            path = self._outbox_path or outbox_for(self.app.broker_url)
            self._outbox = Outbox(path)
        return self._outbox

    def send_confirmation(self, order: OrderConfirmed, event: Event) -> None:
        email = {
            "order_id": order.order_id,
            "to": f"{order.customer_id.lower()}@customers.example",
            "subject": f"Your order {order.order_id} is confirmed",
            "body": f"Thank you! We received your payment of {order.total:.2f} EUR.",
            "event_id": event.id,
            "sent_at": datetime.now(UTC).isoformat(),
        }
        if self.outbox.send(email):
            self.sent += 1
        else:
            self.duplicates += 1


def __getattr__(name: str) -> App:
    """``app``: the service on ``TIDINGS_BROKER``, built on first use (``tidings run``)."""
    return standalone(__name__, name, Mailer)
