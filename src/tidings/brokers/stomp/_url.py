"""Settings of the STOMP adapter, from a ``stomp://`` URL (typed, validated).

``stomp://[user:password@]host[:port][/vhost][?option=value&...]``; every option
is listed in :data:`_URL_OPTIONS` and documented in ``docs/brokers/stomp.md``.
The vhost is the URL's path, percent-encoded (``%2F`` is ``/``, the default),
sent as the ``host`` header of ``CONNECT``. The password never appears in
``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.brokers._rabbitmq_url import RabbitUrl, flag, option_errors
from tidings.errors import ConfigurationError

__all__ = ["StompOptions"]

_URL_OPTIONS = frozenset(
    (
        "connect_timeout",
        "publish_timeout",
        "heartbeat",
        "binding",
        "queue_type",
        "tls",
        "tls_ca",
        "retry_grace",
    )
)


@dataclass(frozen=True, slots=True)
class StompOptions:
    """What :class:`~tidings.brokers.stomp.StompBroker` takes; validated on creation.

    ``connect_timeout``: seconds to connect and get ``CONNECTED`` before
    :class:`~tidings.errors.BrokerUnavailable` (10); ``publish_timeout``: seconds a
    publish waits for its receipts before :class:`~tidings.errors.PublishError` (10);
    ``heartbeat``: seconds between STOMP heart-beats each way (5; a server silent for
    twice that is taken as gone); ``binding``: ``binary`` (CloudEvents attributes as
    ``cloudEvents_`` headers) or ``structured``; ``queue_type``: the groups' queues,
    ``quorum`` (counts redeliveries durably) or ``classic``; ``tls``: connect with TLS
    (``true``/``false``; port 61614 by default then) and ``tls_ca`` a CA file;
    ``retry_grace``: seconds after a delayed retry's due time after which a member that
    did not get it back reports it as taken by another member (2).
    """

    host: str = "127.0.0.1"
    port: int = 61613
    vhost: str = "/"
    url: str = ""
    """The URL as given, redacted (for messages)."""
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    tls: bool = False
    tls_ca: str | None = None
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    heartbeat: float = 5.0
    binding: str = "binary"
    queue_type: str = "quorum"
    retry_grace: float = 2.0

    def __post_init__(self) -> None:
        for option in ("connect_timeout", "publish_timeout", "heartbeat", "retry_grace"):
            if getattr(self, option) <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if self.binding not in ("binary", "structured"):
            raise ConfigurationError(
                f"binding must be 'binary' or 'structured' in {self.url!r}; got {self.binding!r}"
            )
        if self.queue_type not in ("quorum", "classic"):
            raise ConfigurationError(
                f"queue_type must be 'quorum' or 'classic' in {self.url!r}; got {self.queue_type!r}"
            )

    @classmethod
    def from_url(cls, url: str) -> StompOptions:
        parts = RabbitUrl.split(url, "stomp", ("stomp",), _URL_OPTIONS)
        query, redacted = parts.query, parts.redacted
        tls = flag("tls", query.get("tls", "false"), redacted)
        with option_errors("stomp", redacted):
            return cls(
                host=parts.host,
                port=parts.port or (61614 if tls else 61613),
                vhost=parts.vhost,
                url=redacted,
                username=parts.username,
                password=parts.password,
                tls=tls,
                tls_ca=query.get("tls_ca") or None,
                connect_timeout=float(query.get("connect_timeout", 10.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                heartbeat=float(query.get("heartbeat", 5.0)),
                binding=query.get("binding", "binary"),
                queue_type=query.get("queue_type", "quorum"),
                retry_grace=float(query.get("retry_grace", 2.0)),
            )
