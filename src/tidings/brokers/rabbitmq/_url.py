"""Settings of the RabbitMQ adapter, from an ``amqp://`` URL (typed, validated).

``amqp[s]://[user:password@]host[:port][/vhost][?option=value&...]``; every option
is listed in :data:`_URL_OPTIONS` and documented in ``docs/brokers/rabbitmq.md``.
The vhost is the URL's path, percent-encoded (``%2F`` is ``/``, the default). The
password never appears in ``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.brokers._rabbitmq_url import RabbitUrl, flag, option_errors
from tidings.errors import ConfigurationError

__all__ = ["RabbitOptions"]

_URL_OPTIONS = frozenset(
    (
        "connect_timeout",
        "publish_timeout",
        "partitions",
        "heartbeat",
        "binding",
        "tls_ca",
        "management",
        "history",
        "retention",
        "retention_bytes",
    )
)


@dataclass(frozen=True, slots=True)
class RabbitOptions:
    """What :class:`~tidings.brokers.rabbitmq.RabbitBroker` takes; validated on creation.

    ``connect_timeout``: seconds to reach the server before
    :class:`~tidings.errors.BrokerUnavailable` (5); ``publish_timeout``: seconds a
    publish may wait for its confirms (10); ``partitions``: queues per consumer group
    (4), each consumed by one member at a time; ``heartbeat``: seconds between a
    member's checks of its group (1); ``binding``: the CloudEvents mode events are
    written in, ``binary`` (``cloudEvents_`` application properties) or ``structured``;
    ``management``: the management API's base URL, for inspection
    (``http://<host>:15672``, ``https://<host>:15671`` for ``amqps``); ``retention``:
    seconds a topic's history streams keep events (7 days; 0 keeps them without an
    age limit); ``retention_bytes``: bytes each history stream keeps at most (none).
    Both apply when a topic's streams are created. ``history``: whether topics keep
    history streams at all (``true``; without them there is no replay or inspection).
    """

    host: str = "127.0.0.1"
    port: int = 5672
    vhost: str = "/"
    url: str = ""
    """The URL as given, redacted (for messages)."""
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    tls: bool = False
    tls_ca: str | None = None
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    partitions: int = 4
    heartbeat: float = 1.0
    binding: str = "binary"
    management: str = ""
    history: bool = True
    retention: float = 7 * 86400.0
    retention_bytes: int | None = None

    def __post_init__(self) -> None:
        for option in ("connect_timeout", "publish_timeout", "heartbeat"):
            if getattr(self, option) <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if not 1 <= self.partitions <= 256:
            raise ConfigurationError(f"partitions must be between 1 and 256 in {self.url!r}")
        if self.retention < 0:
            raise ConfigurationError(f"retention must be >= 0 in {self.url!r}")
        if self.retention_bytes is not None and self.retention_bytes < 1:
            raise ConfigurationError(f"retention_bytes must be > 0 in {self.url!r}")
        if self.management and not self.management.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"management must be an http:// or https:// URL in {self.url!r}"
            )
        if self.binding not in ("binary", "structured"):
            raise ConfigurationError(
                f"binding must be 'binary' or 'structured' in {self.url!r}; got {self.binding!r}"
            )

    @classmethod
    def from_url(cls, url: str) -> RabbitOptions:
        parts = RabbitUrl.split(url, "amqp", ("amqp", "amqps"), _URL_OPTIONS)
        query, redacted, host = parts.query, parts.redacted, parts.host
        tls = parts.scheme == "amqps"
        management = query.get("management") or (
            f"https://{host}:15671" if tls else f"http://{host}:15672"
        )
        if ":" in host and "[" not in management:  # an IPv6 literal
            management = management.replace(f"//{host}:", f"//[{host}]:", 1)
        with option_errors("amqp", redacted):
            return cls(
                host=host,
                port=parts.port or (5671 if tls else 5672),
                vhost=parts.vhost,
                url=redacted,
                username=parts.username,
                password=parts.password,
                tls=tls,
                tls_ca=query.get("tls_ca"),
                connect_timeout=float(query.get("connect_timeout", 5.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                partitions=int(query.get("partitions", 4)),
                heartbeat=float(query.get("heartbeat", 1.0)),
                binding=query.get("binding", "binary"),
                management=management,
                history=flag("history", query.get("history", "true"), redacted),
                retention=float(query.get("retention", 7 * 86400.0)),
                retention_bytes=(
                    int(query["retention_bytes"]) if query.get("retention_bytes") else None
                ),
            )
