"""Settings of the Pub/Sub adapter, from a ``gcppubsub://`` URL (typed, validated).

``gcppubsub://PROJECT[?option=value&...]``. ``emulator=host:port`` talks to a
Pub/Sub emulator over plain gRPC without credentials (as ``PUBSUB_EMULATOR_HOST``
does for Google's clients, which the adapter also honours when the URL names no
emulator). Otherwise the client finds Google's endpoint and Application Default
Credentials the standard way (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server); ``endpoint=host:port`` picks
another endpoint (a regional one, which Google recommends with ordering keys).
Every option is listed in :data:`_URL_OPTIONS` and documented in
``docs/brokers/pubsub.md``. No secret ever appears in a URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tidings.errors import ConfigurationError

__all__ = ["PubSubOptions"]

_URL_OPTIONS = frozenset(
    (
        "emulator",
        "endpoint",
        "ordering",
        "binding",
        "connect_timeout",
        "publish_timeout",
        "retention",
        "max_deliveries",
        "pullers",
        "wait",
    )
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: A Google Cloud project id: 6-30 characters, lower case letters, digits and hyphens
#: (emulators take any such name; shorter ones are allowed for them too).
_PROJECT = re.compile(r"[a-z][a-z0-9-]{0,29}")
_HOST_PORT = re.compile(r"\[?[A-Za-z0-9.:-]+\]?:\d{1,5}")
#: Pub/Sub keeps a topic's messages from 10 minutes to 31 days.
_RETENTION = (600, 31 * 86400)


def _flag(value: str, name: str, url: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false in {url!r}; got {value!r}")


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    """What :class:`~tidings.brokers.pubsub.PubSubBroker` takes; validated on creation.

    ``project``: the Google Cloud project holding the topics and subscriptions.
    ``emulator``: ``host:port`` of a Pub/Sub emulator (None: Google's service, or
    ``PUBSUB_EMULATOR_HOST``). ``endpoint``: another service endpoint (None: the
    global one). ``ordering``: subscriptions deliver the messages of an ordering
    key (the partition key) in order (True). ``binding``: ``binary`` (CloudEvents
    attributes as ``ce-`` message attributes) or ``structured`` (JSON bodies).
    ``connect_timeout`` (10) and ``publish_timeout`` (10): seconds.
    ``retention``: seconds a topic keeps its messages, acked or not, for replay
    and for new groups starting at ``earliest`` (7 days; 0 keeps none: no replay).
    ``max_deliveries``: the dead-letter policy's attempts, 5-100, after which
    Pub/Sub forwards a message to ``<topic>.dlq`` (25). ``pullers``: pull calls in
    flight per subscription and member (2). ``wait``: seconds a pull waits for
    messages before asking again (3); closing a subscription waits for its pulls.
    """

    project: str
    url: str = ""
    emulator: str | None = None
    endpoint: str | None = None
    ordering: bool = True
    binding: str = "binary"
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    retention: int = 7 * 86400
    max_deliveries: int = 25
    pullers: int = 2
    wait: float = 3.0

    def __post_init__(self) -> None:
        if not _PROJECT.fullmatch(self.project):
            raise ConfigurationError(
                f"{self.project!r} is not a Google Cloud project id in {self.url!r}: lower case "
                "letters, digits and hyphens, starting with a letter"
            )
        for option in ("connect_timeout", "publish_timeout", "wait"):
            if getattr(self, option) <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if self.retention and not _RETENTION[0] <= self.retention <= _RETENTION[1]:
            raise ConfigurationError(
                f"retention must be 0 or between {_RETENTION[0]} and {_RETENTION[1]} seconds "
                f"(10 minutes to 31 days) in {self.url!r}"
            )
        if not 5 <= self.max_deliveries <= 100:
            raise ConfigurationError(
                f"max_deliveries must be between 5 and 100 (Pub/Sub's bounds) in {self.url!r}"
            )
        if not 1 <= self.pullers <= 32:
            raise ConfigurationError(f"pullers must be between 1 and 32 in {self.url!r}")
        if self.binding not in ("binary", "structured"):
            raise ConfigurationError(
                f"binding must be 'binary' or 'structured' in {self.url!r}; got {self.binding!r}"
            )
        for option in ("emulator", "endpoint"):
            value = getattr(self, option)
            if value is not None and not _HOST_PORT.fullmatch(value):
                raise ConfigurationError(f"{option} must be host:port in {self.url!r}")

    @property
    def target(self) -> str:
        """Where the channel goes (the emulator, or the endpoint)."""
        return self.emulator or self.endpoint or "pubsub.googleapis.com:443"

    @classmethod
    def from_url(cls, url: str) -> PubSubOptions:
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
        except ValueError as exc:
            raise ConfigurationError(f"bad Pub/Sub URL {url!r}: {exc}") from None
        if scheme != "gcppubsub":
            raise ConfigurationError(f"not a gcppubsub:// URL: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"a gcppubsub:// URL carries no credentials ({url.split('@')[-1]!r}): Google's "
                "Application Default Credentials are used (GOOGLE_APPLICATION_CREDENTIALS)"
            )
        if parts.path not in ("", "/"):
            raise ConfigurationError(
                f"a Pub/Sub URL is gcppubsub://PROJECT[?options], with no path: {url!r}"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown Pub/Sub URL option(s) {', '.join(sorted(unknown))} in {url!r}; "
                f"known: {', '.join(sorted(_URL_OPTIONS))}"
            )
        emulator = query.get("emulator") or os.environ.get("PUBSUB_EMULATOR_HOST") or None
        try:
            return cls(
                project=parts.netloc,
                url=url,
                emulator=emulator,
                endpoint=query.get("endpoint") or None,
                ordering=_flag(query.get("ordering", "true"), "ordering", url),
                binding=query.get("binding", "binary"),
                connect_timeout=float(query.get("connect_timeout", 10.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                retention=int(query.get("retention", 7 * 86400)),
                max_deliveries=int(query.get("max_deliveries", 25)),
                pullers=int(query.get("pullers", 2)),
                wait=float(query.get("wait", 3.0)),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad Pub/Sub URL option in {url!r}: {exc}") from None
