"""Settings of the NATS JetStream adapter, from a ``nats://`` URL (typed, validated).

``nats://[user:password@|token@]host[:port][,host2[:port2]...][?option=value&...]``;
every option is listed in :data:`_URL_OPTIONS` and documented in ``docs/brokers/nats.md``.
The password and token never appear in ``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["NatsOptions"]

_URL_OPTIONS = frozenset(
    (
        "connect_timeout",
        "publish_timeout",
        "name",
        "token",
        "creds",
        "tls",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "partitions",
        "replicas",
        "duplicate_window",
        "heartbeat",
        "session_timeout",
    )
)
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """What :class:`~tidings.brokers.nats.NatsBroker` takes; validated on creation.

    ``servers``: ``nats://host:port`` addresses (no credentials); ``connect_timeout``:
    seconds to reach a server before :class:`~tidings.errors.BrokerUnavailable` (10);
    ``publish_timeout``: seconds to wait for JetStream's acknowledgement (10);
    ``partitions``/``replicas``: for streams this adapter creates (4 / 1);
    ``duplicate_window``: seconds JetStream remembers ``Nats-Msg-Id`` (120);
    ``heartbeat``/``session_timeout``: group membership (1 / 5 seconds).
    """

    servers: tuple[str, ...]
    url: str = ""
    """The URL as given, redacted (for messages)."""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: str | None = None
    name: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    partitions: int = 4
    replicas: int = 1
    duplicate_window: float = 120.0
    heartbeat: float = 1.0
    session_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigurationError("a nats:// URL needs at least one host")
        positive = {
            "connect_timeout": self.connect_timeout,
            "publish_timeout": self.publish_timeout,
            "duplicate_window": self.duplicate_window,
            "heartbeat": self.heartbeat,
            "session_timeout": self.session_timeout,
        }
        for option, value in positive.items():
            if value <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if self.partitions < 1 or self.replicas < 1:
            raise ConfigurationError(f"partitions and replicas must be >= 1 in {self.url!r}")
        if self.heartbeat * 2 > self.session_timeout:
            raise ConfigurationError(
                f"session_timeout must be at least twice the heartbeat in {self.url!r}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError(f"tls_cert and tls_key go together in {self.url!r}")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None

    @classmethod
    def from_url(cls, url: str) -> NatsOptions:
        redacted = redact_url(url)
        try:
            parts = urlsplit(url)
            scheme = parts.scheme
        except ValueError as exc:
            raise ConfigurationError(f"bad nats URL {redacted!r}: {exc}") from None
        if scheme != "nats":
            raise ConfigurationError(f"not a nats:// URL: {redacted!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = password = token = None
        if userinfo:
            name, sep, secret = userinfo.partition(":")
            if sep:
                user, password = unquote(name), unquote(secret)
            else:
                token = unquote(name)  # nats://TOKEN@host, as the NATS clients read it
        servers = tuple(
            f"nats://{host if ':' in host else host + ':4222'}"
            for host in (h.strip() for h in hosts.split(","))
            if host
        )
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown nats URL option(s) {', '.join(sorted(unknown))} in {redacted!r}; "
                f"known: {', '.join(sorted(_URL_OPTIONS))}"
            )
        tls = query.get("tls", "false").lower()
        if tls not in _TRUE | _FALSE:
            raise ConfigurationError(f"tls must be true or false in {redacted!r}")
        try:
            return cls(
                servers,
                url=redacted,
                user=user,
                password=password,
                token=query.get("token", token),
                creds=query.get("creds"),
                name=query.get("name"),
                tls=tls in _TRUE,
                tls_ca=query.get("tls_ca"),
                tls_cert=query.get("tls_cert"),
                tls_key=query.get("tls_key"),
                connect_timeout=float(query.get("connect_timeout", 10.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                partitions=int(query.get("partitions", 4)),
                replicas=int(query.get("replicas", 1)),
                duplicate_window=float(query.get("duplicate_window", 120.0)),
                heartbeat=float(query.get("heartbeat", 1.0)),
                session_timeout=float(query.get("session_timeout", 5.0)),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad nats URL option in {redacted!r}: {exc}") from None
