"""tidings: event-driven systems for Python.

Producers publish immutable CloudEvents to topics; consumers react in
consumer groups with the delivery guarantee they ask for. The same app runs
on the in-memory broker, the embedded one, or a real broker, chosen by URL.
"""

from __future__ import annotations

from tidings.app import App
from tidings.broker import Broker, Capabilities, Delivery, Message
from tidings.codec import Codec
from tidings.context import Context
from tidings.deadletter import DeadLetter
from tidings.depends import Depends
from tidings.errors import (
    AttemptsExhausted,
    BrokerUnavailable,
    ConfigurationError,
    DecodeError,
    EventTooLargeError,
    InvalidEventError,
    PublishError,
    Reject,
    RequestError,
    RequestFailed,
    RequestTimeout,
    Retry,
    SchemaError,
    StartupError,
    StorageError,
    SubscriptionFailedError,
    TidingsError,
    UnroutableError,
)
from tidings.event import Event
from tidings.exactly_once import ExactlyOnce
from tidings.filters import all_of, any_of, exact, not_, prefix, suffix
from tidings.health import Health
from tidings.hooks import Observer
from tidings.middleware import Handle, Outgoing
from tidings.payload import event_type
from tidings.retry import RetryPolicy
from tidings.stats import ConsumerStats
from tidings.supervision import Supervision

__version__ = "0.1.0"

__all__ = [
    "App",
    "AttemptsExhausted",
    "Broker",
    "BrokerUnavailable",
    "Capabilities",
    "Codec",
    "ConfigurationError",
    "ConsumerStats",
    "Context",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "Depends",
    "Event",
    "EventTooLargeError",
    "ExactlyOnce",
    "Handle",
    "Health",
    "InvalidEventError",
    "Message",
    "Observer",
    "Outgoing",
    "PublishError",
    "Reject",
    "RequestError",
    "RequestFailed",
    "RequestTimeout",
    "Retry",
    "RetryPolicy",
    "SchemaError",
    "StartupError",
    "StorageError",
    "SubscriptionFailedError",
    "Supervision",
    "TidingsError",
    "UnroutableError",
    "__version__",
    "all_of",
    "any_of",
    "event_type",
    "exact",
    "not_",
    "prefix",
    "suffix",
]
