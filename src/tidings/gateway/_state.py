"""What every route of one gateway shares: the broker, the App that publishes, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from tidings.app import App
from tidings.broker import Broker
from tidings.codec import Codec
from tidings.inspection import Inspectable

__all__ = ["Gateway", "Settings", "gateway_of"]


@dataclass(frozen=True)
class Settings:
    """Limits and timings of a gateway, with their defaults."""

    max_body_size: int = 4 * 1024 * 1024
    """Largest request body accepted (bytes); a larger one is answered with 413."""
    heartbeat: float = 15.0
    """Seconds between two comment lines on an idle event stream."""
    poll_interval: float = 0.2
    """Seconds between two looks for new events in a stream on an inspectable broker."""


@dataclass
class Gateway:
    broker: Broker
    #: Publishes (not started: it subscribes to nothing). It brings the broker's
    #: wire format, the event size limit and the publish middleware (tracing).
    app: App
    settings: Settings = field(default_factory=Settings)
    #: Reads the HTTP binding: ``ce-`` headers, percent-encoded values.
    http_codec: Codec = field(default_factory=lambda: Codec(header_prefix="ce-"))

    @property
    def inspectable(self) -> Inspectable | None:
        return self.broker if isinstance(self.broker, Inspectable) else None


def gateway_of(request: Request) -> Gateway:
    gateway = request.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway
