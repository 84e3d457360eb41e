"""Settings of the embedded broker, from keyword arguments or a ``sqlite://`` URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.brokers.sqlite._schema import Durability
from tidings.errors import ConfigurationError

__all__ = ["SqliteConfig"]

_URL_OPTIONS = frozenset(
    (
        "durability",
        "partitions",
        "session_timeout",
        "heartbeat",
        "retention_interval",
        "dedup_window",
        "busy_timeout",
    )
)


@dataclass(frozen=True, slots=True)
class SqliteConfig:
    """What :class:`~tidings.brokers.sqlite.SqliteBroker` takes; validated on creation.

    ``durability``: ``full`` (fsync every commit) or ``normal``;
    ``partitions``: for new topics (4); ``session_timeout``: seconds before a
    silent member's partitions move (10); ``heartbeat_interval`` (URL:
    ``heartbeat``): seconds between heartbeats (a third of the session, at most
    1); ``retention_interval``: seconds between retention passes (30);
    ``dedup_window``: seconds an exactly-once dedup record is kept (7 days);
    ``busy_timeout``: seconds a write waits for another process's write lock
    before it fails (30).
    """

    path: str
    durability: Durability = "full"
    partitions: int = 4
    session_timeout: float = 10.0
    heartbeat_interval: float | None = None
    retention_interval: float = 30.0
    dedup_window: float = 7 * 24 * 3600.0
    busy_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        if self.session_timeout <= 0:
            raise ConfigurationError("session_timeout must be > 0")
        if self.durability not in ("full", "normal"):
            raise ConfigurationError(
                f"durability must be 'full' or 'normal', got {self.durability!r}"
            )
        if self.retention_interval <= 0:
            raise ConfigurationError("retention_interval must be > 0")
        if self.dedup_window <= 0:
            raise ConfigurationError("dedup_window must be > 0 seconds")
        if self.busy_timeout < 0:
            raise ConfigurationError("busy_timeout must be >= 0 seconds")

    @property
    def heartbeat(self) -> float:
        """Seconds between heartbeats: as given, else a third of the session (at most 1)."""
        return self.heartbeat_interval or min(1.0, self.session_timeout / 3)

    @classmethod
    def from_url(cls, url: str) -> SqliteConfig:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, with query options."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigurationError(f"not a sqlite:// URL: {redact_url(url)!r}")
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or len(path) < 2:
            raise ConfigurationError(
                f"bad sqlite URL {redact_url(url)!r}: use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown sqlite URL option(s): {', '.join(sorted(unknown))}")
        try:
            return cls(
                path[1:],
                durability=query.get("durability", "full"),  # type: ignore[arg-type]
                partitions=int(query.get("partitions", 4)),
                session_timeout=float(query.get("session_timeout", 10.0)),
                heartbeat_interval=float(query["heartbeat"]) if "heartbeat" in query else None,
                retention_interval=float(query.get("retention_interval", 30.0)),
                dedup_window=float(query.get("dedup_window", 7 * 24 * 3600.0)),
                busy_timeout=float(query.get("busy_timeout", 30.0)),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(
                f"bad sqlite URL option in {redact_url(url)!r}: {exc}"
            ) from exc
