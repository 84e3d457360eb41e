"""Settings of the Redis Streams adapter, from a ``redis://`` URL (typed, validated).

``redis[s]://[[user]:password@]host[:port][/db][?option=value&...]``; every option is
listed in :data:`_URL_OPTIONS` and documented in ``docs/brokers/redis.md``. The
password never appears in ``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["RedisOptions"]

_URL_OPTIONS = frozenset(
    (
        "connect_timeout",
        "publish_timeout",
        "prefix",
        "partitions",
        "maxlen",
        "heartbeat",
        "session_timeout",
        "tls_ca",
    )
)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """What :class:`~tidings.brokers.redis.RedisBroker` takes; validated on creation.

    ``connect_timeout``: seconds to reach the server before
    :class:`~tidings.errors.BrokerUnavailable` (5); ``publish_timeout``: seconds a
    publish may take (10); ``prefix``: of every key this adapter writes (``tidings``);
    ``partitions``: streams of a topic this adapter creates (4); ``maxlen``: approximate
    cap of each stream (``XADD MAXLEN ~``, 0 = none); ``heartbeat``/``session_timeout``:
    group membership and partition leases (1 / 5 seconds).
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    url: str = ""
    """The URL as given, redacted (for messages)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: str | None = None
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    prefix: str = "tidings"
    partitions: int = 4
    maxlen: int = 0
    heartbeat: float = 1.0
    session_timeout: float = 5.0

    def __post_init__(self) -> None:
        positive = {
            "connect_timeout": self.connect_timeout,
            "publish_timeout": self.publish_timeout,
            "heartbeat": self.heartbeat,
            "session_timeout": self.session_timeout,
        }
        for option, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if self.partitions < 1 or self.maxlen < 0 or self.db < 0:
            raise ConfigurationError(f"partitions must be >= 1, maxlen and db >= 0 in {self.url!r}")
        if self.heartbeat * 2 > self.session_timeout:
            raise ConfigurationError(
                f"session_timeout must be at least twice the heartbeat in {self.url!r}"
            )
        if not self.prefix or any(c in self.prefix for c in " {}"):
            raise ConfigurationError(f"prefix must be a word without spaces in {self.url!r}")

    @classmethod
    def from_url(cls, url: str) -> RedisOptions:
        redacted = redact_url(url)
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad redis URL {redacted!r}: {exc}") from None
        if scheme not in ("redis", "rediss"):
            raise ConfigurationError(f"not a redis:// URL: {redacted!r}")
        path = parts.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown redis URL option(s) {', '.join(sorted(unknown))} in {redacted!r}; "
                f"known: {', '.join(sorted(_URL_OPTIONS))}"
            )
        try:
            return cls(
                host=host or "127.0.0.1",
                port=port or 6379,
                db=int(path or 0),
                url=redacted,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password is not None else None,
                tls=scheme == "rediss",
                tls_ca=query.get("tls_ca"),
                connect_timeout=float(query.get("connect_timeout", 5.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                prefix=query.get("prefix", "tidings"),
                partitions=int(query.get("partitions", 4)),
                maxlen=int(query.get("maxlen", 0)),
                heartbeat=float(query.get("heartbeat", 1.0)),
                session_timeout=float(query.get("session_timeout", 5.0)),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad redis URL option in {redacted!r}: {exc}") from None
