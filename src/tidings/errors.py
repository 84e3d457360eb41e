"""The tidings error tree: one root, small families.

Adapters translate driver errors at their boundary (``raise ... from exc``) so
user code only ever needs to catch these.
"""

from __future__ import annotations

__all__ = [
    "AttemptsExhausted",
    "BrokerClosedError",
    "BrokerUnavailable",
    "ConcurrencyError",
    "ConfigurationError",
    "ConnectionError",
    "DecodeError",
    "EventTooLargeError",
    "GroupInUseError",
    "HandlerError",
    "InvalidEventError",
    "NotFoundError",
    "PublishError",
    "Reject",
    "RequestError",
    "RequestFailed",
    "RequestTimeout",
    "Retry",
    "SchemaError",
    "StartupError",
    "StorageError",
    "SubscriptionFailedError",
    "TidingsError",
    "UnroutableError",
]


class TidingsError(Exception):
    """Root of every error tidings raises on purpose."""


class ConfigurationError(TidingsError, ValueError):
    """A setting, URL, subscription or handler signature is wrong."""


class ConnectionError(TidingsError):
    """The broker could not be reached or the connection was lost."""


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached (within the connect timeout) or went away.

    The message names the broker URL without its password.
    """


class BrokerClosedError(ConnectionError):
    """An operation was attempted on a broker or subscription that is closed."""


class StorageError(TidingsError):
    """A broker's own storage failed: a corrupt, unreadable or vanished file."""


class PublishError(TidingsError):
    """A publish could not complete; the event may or may not have been stored."""


class EventTooLargeError(PublishError, ValueError):
    """The encoded event exceeds the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"encoded event is {size} bytes, over the limit of {limit} bytes; "
            "store large data elsewhere and publish a reference, or raise max_event_size"
        )
        self.size = size
        self.limit = limit


class UnroutableError(PublishError, LookupError):
    """No topic is known for a payload: pass ``topic=`` or declare ``app.route(...)``."""


class NotFoundError(TidingsError, LookupError):
    """What was asked for by name or position is not stored: a topic, a dead letter, an event."""


class InvalidEventError(TidingsError, ValueError):
    """An event violates the CloudEvents 1.0 rules (missing or malformed attribute)."""


class DecodeError(TidingsError, ValueError):
    """Bytes or headers could not be decoded into a valid event.

    Never retried: an event that cannot be decoded goes straight to the DLQ.
    """


class SchemaError(TidingsError, ValueError):
    """Event data does not match the payload type a handler asked for."""


class HandlerError(TidingsError):
    """Base for signals a handler raises to steer delivery (see Retry, Reject)."""


class Reject(HandlerError):
    """Raise from a handler to dead-letter the event at once, without retries."""


class AttemptsExhausted(HandlerError):
    """An event came back more often than ``max_attempts`` with no outcome recorded.

    Its handlings ended with their process (killed, crashed, out of memory)
    before they could fail or succeed; it is dead-lettered without running
    the handler again, so a process-killing event cannot stall its partition.
    """

    def __init__(self, attempt: int, max_attempts: int) -> None:
        super().__init__(
            f"delivered for attempt {attempt} with max_attempts={max_attempts}: "
            "earlier handlings ended without an outcome (the process died)"
        )
        self.attempt = attempt
        self.max_attempts = max_attempts


class Retry(HandlerError):
    """Raise from a handler to ask for another attempt after ``delay`` seconds.

    The attempt still counts against the retry policy's ``max_attempts``.
    """

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        if delay < 0:
            raise ConfigurationError(f"Retry delay must be >= 0, got {delay}")
        super().__init__(reason or f"retry requested in {delay}s")
        self.delay = delay


class StartupError(TidingsError):
    """A startup hook or an app-scoped dependency failed: the app did not start."""


class SubscriptionFailedError(TidingsError):
    """A subscription stopped for good: its broker kept failing, or a bug in tidings.

    ``App.serve()``/``App.run()`` raise it (and ``tidings run`` exits non-zero)
    after stopping the app; ``cause`` is the error that ended the subscription.
    """

    def __init__(self, subscription: str, cause: BaseException) -> None:
        super().__init__(f"subscription {subscription!r} failed: {cause!r}")
        self.subscription = subscription
        self.cause = cause


class ConcurrencyError(TidingsError):
    """An optimistic-concurrency check failed (expected version did not match)."""


class GroupInUseError(TidingsError):
    """A consumer group cannot be deleted while it has live members: stop them first."""


class RequestError(TidingsError):
    """Base for the outcomes of :meth:`tidings.App.request` other than a reply."""

    def __init__(self, message: str, topic: str, request_id: str) -> None:
        super().__init__(message)
        self.topic = topic
        self.request_id = request_id


class RequestTimeout(RequestError, TimeoutError):
    """No reply to a request arrived in time (a late reply is dropped and counted)."""

    def __init__(self, topic: str, request_id: str, timeout: float) -> None:
        super().__init__(
            f"no reply to request {request_id} on topic {topic!r} within {timeout:g}s",
            topic,
            request_id,
        )
        self.timeout = timeout


class RequestFailed(RequestError):
    """The handler of a request failed for good (after its retries); the reply says why."""

    def __init__(self, topic: str, request_id: str, error_type: str, error: str) -> None:
        super().__init__(
            f"request {request_id} on topic {topic!r} failed: {error_type}: {error}",
            topic,
            request_id,
        )
        self.error_type = error_type
        self.error = error
