"""The broker a command works on: built from its URL, connected, always closed.

Every broker problem becomes a :class:`CommandError` here, so a command module
only says what it needs: a broker to publish to (:func:`connected`) or one it
can look into (:func:`inspecting`); reading a whole topic page by page
(:func:`stored`, :func:`heads`) comes from :mod:`tidings.positions`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, cast

from tidings.broker import Broker
from tidings.brokers import from_url, redact_url
from tidings.cli._errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from tidings.errors import ConfigurationError, ConnectionError
from tidings.inspection import Inspectable, LocalStorage, ReadOnly
from tidings.positions import heads, stored
from tidings.settings import default_broker_url

__all__ = ["InspectableBroker", "can_inspect", "connected", "heads", "inspecting", "stored"]

#: Schemes whose broker lives inside one process: another process sees nothing of it.
_IN_PROCESS = frozenset({"memory"})


class InspectableBroker(Broker, Inspectable, Protocol):
    """A broker the operational commands can look into and administer."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _build(url: str | None) -> tuple[str, Broker]:
    url = url or default_broker_url()
    if _scheme(url) in _IN_PROCESS:
        raise CommandError(
            f"{_scheme(url)}:// lives inside one process and cannot be reached from another; "
            "use the embedded broker, e.g. --broker sqlite:///./tidings.db",
            EXIT_USAGE,
        )
    try:
        return url, from_url(url)
    except ConfigurationError as exc:
        raise CommandError(f"--broker: {exc}", EXIT_USAGE) from None


def _missing_storage(broker: Broker) -> str | None:
    """Where a broker with local storage keeps it, when that does not exist yet."""
    return broker.missing_storage() if isinstance(broker, LocalStorage) else None


@asynccontextmanager
async def connected(url: str | None, *, create: bool = False) -> AsyncIterator[Broker]:
    """The broker ``url`` names (default: ``TIDINGS_BROKER``, else ``./tidings.db``), connected.

    Without ``create``, a command refuses a broker's local storage (the
    embedded database file) that does not exist rather than creating it empty.
    """
    url, broker = _build(url)
    async with _session(url, broker, create):
        yield broker


def can_inspect(url: str | None) -> bool:
    """Whether the broker ``url`` names keeps what it stores readable (:class:`Inspectable`)."""
    return isinstance(_build(url)[1], Inspectable)


@asynccontextmanager
async def inspecting(
    url: str | None, *, unsupported: int = EXIT_FAILURE, read_only: bool = False
) -> AsyncIterator[InspectableBroker]:
    """Like :func:`connected`, for a broker that implements :class:`Inspectable`.

    A broker that does not ends the command with exit code ``unsupported``.
    ``read_only``: the command only reads, so a broker that can (:class:`ReadOnly`)
    opens its storage read-only: it works on a read-only file.
    """
    url, broker = _build(url)
    if read_only and isinstance(broker, ReadOnly):
        broker.open_read_only()
    if not isinstance(broker, Inspectable):
        raise CommandError(
            f"{redact_url(url)} cannot be inspected: {type(broker).__name__} does not "
            "list topics, groups or stored events; use the embedded broker (sqlite://)",
            unsupported,
        )
    async with _session(url, broker, create=False):
        yield cast(InspectableBroker, broker)


@asynccontextmanager
async def _session(url: str, broker: Broker, create: bool) -> AsyncIterator[None]:
    missing = None if create else _missing_storage(broker)
    if missing is not None:
        raise CommandError(
            f"no tidings database at {missing}: nothing was published there yet "
            "(pass --broker or set TIDINGS_BROKER to use another)"
        )
    try:
        await broker.connect()
    except ConfigurationError as exc:
        await broker.close()
        raise CommandError(str(exc)) from None
    except ConnectionError as exc:
        await broker.close()
        raise CommandError(f"cannot connect to {redact_url(url)}: {exc}") from None
    try:
        yield
    finally:
        await broker.close()
