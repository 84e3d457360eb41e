"""Finding a broker by URL scheme.

Built-in schemes are imported lazily, by name, so core never imports an
adapter. Third-party packages add schemes through the ``tidings.brokers``
entry-point group: the entry point names the scheme and points at a callable
taking the URL and returning a :class:`~tidings.broker.Broker`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from tidings.broker import Broker
from tidings.errors import ConfigurationError

__all__ = ["from_url", "redact_url", "schemes"]

_BUILTIN: dict[str, str] = {
    "memory": "tidings.brokers.memory:MemoryBroker.from_url",
    "sqlite": "tidings.brokers.sqlite:SqliteBroker.from_url",
    "kafka": "tidings.brokers.kafka:KafkaBroker.from_url",
    "nats": "tidings.brokers.nats:NatsBroker.from_url",
    "redis": "tidings.brokers.redis:RedisBroker.from_url",
    "rediss": "tidings.brokers.redis:RedisBroker.from_url",
    "mqtt": "tidings.brokers.mqtt:MqttBroker.from_url",
    "amqp": "tidings.brokers.rabbitmq:RabbitBroker.from_url",
    "amqps": "tidings.brokers.rabbitmq:RabbitBroker.from_url",
    "sqs": "tidings.brokers.sqs:SqsBroker.from_url",
    "sns+sqs": "tidings.brokers.sqs:SqsBroker.from_url",
    "stomp": "tidings.brokers.stomp:StompBroker.from_url",
    "gcppubsub": "tidings.brokers.pubsub:PubSubBroker.from_url",
}


#: Scheme -> (the client library its adapter needs, the extra that installs it).
_CLIENTS: dict[str, tuple[str, str]] = {
    "kafka": ("aiokafka", "kafka"),
    "nats": ("nats", "nats"),
    "redis": ("redis", "redis"),
    "rediss": ("redis", "redis"),
    "mqtt": ("aiomqtt", "mqtt"),
    "amqp": ("aio_pika", "rabbitmq"),
    "amqps": ("aio_pika", "rabbitmq"),
    "sqs": ("aiobotocore", "aws"),
    "sns+sqs": ("aiobotocore", "aws"),
    "gcppubsub": ("google.pubsub_v1", "gcp"),
}


def schemes() -> list[str]:
    """Every URL scheme a broker is known for (built-in and installed plug-ins)."""
    found = set(_BUILTIN)
    found.update(ep.name for ep in entry_points(group="tidings.brokers"))
    return sorted(found)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _load(target: str) -> Callable[[str], Broker]:
    module_name, _, attribute = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def from_url(url: str) -> Broker:
    """Create (not yet connect) the broker a URL names, e.g. ``memory://``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"broker URL {url!r} has no scheme; expected e.g. 'memory://' or "
            "'sqlite:///./tidings.db'"
        )
    scheme = url.split("://", 1)[0].lower()
    target = _BUILTIN.get(scheme)
    factory: Callable[[str], Broker] | None = None
    if target is not None:
        _check_client(scheme)
        factory = _load(target)
    else:
        for ep in entry_points(group="tidings.brokers", name=scheme):
            factory = ep.load()
            break
    if factory is None:
        raise ConfigurationError(
            f"no broker for URL scheme {scheme!r} in {redact_url(url)!r}; "
            f"known schemes: {', '.join(schemes())}"
        )
    return factory(url)


def _check_client(scheme: str) -> None:
    """Refuse a scheme whose client library is missing, naming the extra to install."""
    client = _CLIENTS.get(scheme)
    if client is None:
        return
    library, extra = client
    try:
        importlib.import_module(library)
    except ImportError:
        raise ConfigurationError(
            f"{scheme}:// brokers need the {library} package: pip install 'tidings[{extra}]'"
        ) from None
