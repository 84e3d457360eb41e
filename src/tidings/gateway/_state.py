"""What every route of one gateway shares: the broker, the App that publishes, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from tidings.app import App
from tidings.broker import Broker
from tidings.codec import Codec
from tidings.errors import ConfigurationError
from tidings.inspection import Inspectable
from tidings.webhooks.dispatcher import Dispatcher, WebhookSettings

__all__ = ["Gateway", "Settings", "gateway_of"]


@dataclass(frozen=True)
class Settings:
    """Access, limits and timings of a gateway, with their defaults."""

    token: str | None = field(default=None, repr=False)
    """The bearer token every route but ``/openapi.json`` asks for; None: the one
    stored beside the broker (made on first use, see :mod:`tidings.gateway._token`)."""
    auth: bool = True
    """False: no token is asked for (local development only)."""
    max_body_size: int = 1024 * 1024
    """Largest request body accepted (bytes); a larger one is answered with 413."""
    heartbeat: float = 15.0
    """Seconds between two comment lines on an idle event stream."""
    poll_interval: float = 0.2
    """Seconds between two looks for new events in a stream on an inspectable broker."""
    dashboard_interval: float = 1.0
    """Seconds between two snapshots of the dashboard's stream."""
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    """How registered webhooks are delivered, and whether private targets are allowed."""

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ConfigurationError("the gateway token must not be empty")
        if self.max_body_size < 1:
            raise ConfigurationError(f"max_body_size must be >= 1, got {self.max_body_size}")


@dataclass
class Gateway:
    broker: Broker
    #: Publishes (not started: it subscribes to nothing). It brings the broker's
    #: wire format, the event size limit and the publish middleware (tracing).
    app: App
    settings: Settings = field(default_factory=Settings)
    #: Reads the HTTP binding: ``ce-`` headers, percent-encoded values.
    http_codec: Codec = field(default_factory=lambda: Codec(header_prefix="ce-"))
    #: Delivers the registered webhooks (None: the broker keeps no registrations).
    webhooks: Dispatcher | None = None

    @property
    def inspectable(self) -> Inspectable | None:
        return self.broker if isinstance(self.broker, Inspectable) else None


def gateway_of(connection: HTTPConnection) -> Gateway:
    gateway = connection.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway
