"""Settings of the MQTT adapter, from an ``mqtt://`` URL (typed, validated).

``mqtt://[user:password@]host[:port][?option=value&...]``; every option is
listed in :data:`_URL_OPTIONS` and documented in ``docs/brokers/mqtt.md``.
The password never appears in ``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["MqttOptions"]

_URL_OPTIONS = frozenset(
    (
        "client_id",
        "connect_timeout",
        "publish_timeout",
        "keepalive",
        "member",
        "mode",
        "receive_maximum",
        "session_expiry",
        "tls",
        "tls_ca",
        "tls_cert",
        "tls_key",
    )
)
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """What :class:`~tidings.brokers.mqtt.MqttBroker` takes; validated on creation.

    ``client_id``: prefix of the MQTT client ids (``tidings``; each connection
    adds ``-<random>``); ``connect_timeout``: seconds to reach the broker before
    :class:`~tidings.errors.BrokerUnavailable` (10); ``publish_timeout``: seconds
    to wait for a PUBACK (10); ``keepalive``: MQTT keep-alive seconds (30);
    ``receive_maximum``: most unacked messages the broker sends one
    subscription (65535, MQTT's largest; the App hands out at most its prefetch);
    ``mode``: the CloudEvents binding an App uses by default, ``binary`` (user
    properties) or ``structured`` (a JSON envelope, for MQTT 3.1.1 consumers);
    ``session_expiry``: seconds the broker keeps a group member's session (its
    subscription, its unacked messages and what arrives for it) after the member
    vanishes (0: clean sessions, nothing kept); a member that comes back under
    the same ``member`` name within that time gets them; ``member``: this
    process's stable member name, needed with ``session_expiry`` (else the
    ``TIDINGS_MEMBER`` environment variable; ``tidings run --workers`` adds each
    worker's number).
    """

    host: str
    port: int = 1883
    url: str = ""
    """The URL as given, redacted (for messages)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "tidings"
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    keepalive: int = 30
    receive_maximum: int = 65535
    mode: Literal["binary", "structured"] = "binary"
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    session_expiry: int = 0
    member: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigurationError(f"an mqtt:// URL needs a host: {self.url!r}")
        if self.connect_timeout <= 0 or self.publish_timeout <= 0 or self.keepalive < 1:
            raise ConfigurationError(
                f"connect_timeout and publish_timeout must be > 0, keepalive >= 1 in {self.url!r}"
            )
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigurationError(f"receive_maximum must be 1..65535 in {self.url!r}")
        if self.mode not in ("binary", "structured"):
            raise ConfigurationError(f"mode must be binary or structured in {self.url!r}")
        if not self.client_id or any(c in self.client_id for c in "/+#"):
            raise ConfigurationError(f"client_id must be non-empty, without / + # in {self.url!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError(f"tls_cert and tls_key go together in {self.url!r}")
        if not 0 <= self.session_expiry <= 0xFFFFFFFF:
            raise ConfigurationError(f"session_expiry must be 0..4294967295 in {self.url!r}")
        if self.member is not None and (not self.member or any(c in self.member for c in "/+#")):
            raise ConfigurationError(f"member must be non-empty, without / + # in {self.url!r}")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None

    @classmethod
    def from_url(cls, url: str) -> MqttOptions:
        redacted = redact_url(url)
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 1883
        except ValueError as exc:
            raise ConfigurationError(f"bad mqtt URL {redacted!r}: {exc}") from None
        if parts.scheme != "mqtt":
            raise ConfigurationError(f"not an mqtt:// URL: {redacted!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown mqtt URL option(s) {', '.join(sorted(unknown))} in {redacted!r}; "
                f"known: {', '.join(sorted(_URL_OPTIONS))}"
            )
        tls = query.get("tls", "false").lower()
        if tls not in _TRUE | _FALSE:
            raise ConfigurationError(f"tls must be true or false in {redacted!r}")
        mode = query.get("mode", "binary")
        if mode not in ("binary", "structured"):
            raise ConfigurationError(f"mode must be binary or structured in {redacted!r}")
        try:
            return cls(
                host,
                port,
                url=redacted,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                client_id=query.get("client_id", "tidings"),
                connect_timeout=float(query.get("connect_timeout", 10.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                keepalive=int(query.get("keepalive", 30)),
                receive_maximum=int(query.get("receive_maximum", 65535)),
                mode="structured" if mode == "structured" else "binary",
                tls=tls in _TRUE,
                tls_ca=query.get("tls_ca"),
                tls_cert=query.get("tls_cert"),
                tls_key=query.get("tls_key"),
                session_expiry=int(query.get("session_expiry", 0)),
                member=query.get("member"),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad mqtt URL option in {redacted!r}: {exc}") from None
