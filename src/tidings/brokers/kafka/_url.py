"""``kafka://`` URLs -> :class:`KafkaConfig` (typed, validated; the password never printed).

``kafka://[user:password@]host:port[,host:port...][?option=value&...]``; every
option and its default is a field of :class:`KafkaConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["KafkaConfig"]

SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class KafkaConfig:
    """Options of a Kafka client; the URL query sets them by name."""

    bootstrap: tuple[str, ...]
    """``host:port`` of the bootstrap brokers."""
    url: str = ""
    """The URL, password redacted (for messages)."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    """Seconds to reach the cluster before :class:`~tidings.errors.BrokerUnavailable`."""
    client_id: str = "tidings"
    acks: Literal["all", "1"] = "all"
    """Producer acks: ``all`` waits for every in-sync replica (``min.insync.replicas``)."""
    idempotence: bool = True
    """Idempotent producer (no duplicates from producer retries); needs broker support."""
    partitions: int = 4
    """Partitions of topics tidings creates (on first publish or subscribe)."""
    replication: int = 1
    """Replication factor of topics tidings creates (use 3 on a production cluster)."""
    binding: Literal["binary", "structured"] = "binary"
    """CloudEvents Kafka binding of the App's default codec."""
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sasl_mechanism: SaslMechanism = "PLAIN"
    """Used when the URL has a user."""
    session_timeout: float = 10.0
    """Seconds without heartbeat before the group coordinator drops a member."""
    heartbeat_interval: float = 1.0
    commit_interval: float = 0.2
    """Seconds between offset commits of the settled prefix (also at revoke and close)."""
    track_attempts: bool = True
    """Record handed-out offsets so that a redelivery after a crash counts attempt >= 2."""
    linger_ms: int = 0

    def __post_init__(self) -> None:
        if not self.bootstrap or any(not b.strip() for b in self.bootstrap):
            raise ConfigurationError(f"kafka URL {self.url!r} names no broker host:port")
        if self.connect_timeout <= 0 or self.session_timeout <= 0 or self.commit_interval <= 0:
            raise ConfigurationError("kafka timeouts and commit_interval must be > 0")
        if self.heartbeat_interval <= 0 or self.heartbeat_interval >= self.session_timeout:
            raise ConfigurationError("kafka heartbeat_interval must be > 0 and < session_timeout")
        if self.partitions < 1:
            raise ConfigurationError("kafka partitions must be >= 1")
        if self.replication < 1:
            raise ConfigurationError("kafka replication must be >= 1")
        if self.acks not in ("all", "1"):
            raise ConfigurationError(f"kafka acks must be 'all' or '1', got {self.acks!r}")
        if self.binding not in ("binary", "structured"):
            raise ConfigurationError(
                f"kafka binding must be 'binary' or 'structured', got {self.binding!r}"
            )
        if self.sasl_mechanism not in _MECHANISMS:
            raise ConfigurationError(
                f"kafka sasl_mechanism must be one of {', '.join(_MECHANISMS)}"
            )
        if self.linger_ms < 0:
            raise ConfigurationError("kafka linger_ms must be >= 0")

    @property
    def security_protocol(self) -> str:
        if self.user is not None:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    @classmethod
    def from_url(cls, url: str) -> KafkaConfig:
        safe = redact_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigurationError(f"unparseable kafka URL {safe!r}: {exc}") from None
        if parts.scheme != "kafka":
            raise ConfigurationError(f"not a kafka:// URL: {safe!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = password = None
        if userinfo:
            name, _, secret = userinfo.partition(":")
            user, password = unquote(name), unquote(secret)
        bootstrap = tuple(h.strip() for h in hosts.split(",") if h.strip())
        for host in bootstrap:
            _, colon, port = host.rpartition(":")
            if not colon or not port.isdigit():
                raise ConfigurationError(f"kafka URL {safe!r}: {host!r} is not host:port")
        values: dict[str, object] = {}
        known = {f.name: f for f in fields(cls) if f.name not in _NOT_OPTIONS}
        for name, raw in parse_qsl(parts.query, keep_blank_values=True):
            option = known.get(name)
            if option is None:
                raise ConfigurationError(
                    f"unknown kafka URL option {name!r} in {safe!r}; known: {', '.join(known)}"
                )
            values[name] = _parse(name, raw, str(option.type))
        return cls(bootstrap=bootstrap, url=safe, user=user, password=password, **values)  # type: ignore[arg-type]


_NOT_OPTIONS = ("bootstrap", "url", "user", "password")


def _parse(name: str, raw: str, kind: str) -> object:
    try:
        if kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(raw)
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
    except ValueError:
        raise ConfigurationError(f"kafka URL option {name}={raw!r} is not a valid {kind}") from None
    if kind.startswith("str | None"):
        return raw or None
    return raw
