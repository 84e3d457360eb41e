"""The routing table: which topic a payload type (or event type name) is published to."""

from __future__ import annotations

from typing import Any

from tidings.errors import ConfigurationError, UnroutableError
from tidings.event import Event
from tidings.payload import payload_info

__all__ = ["WILDCARDS", "Router", "is_pattern", "validate_topic"]


#: Characters that make a subscription topic a pattern on brokers with wildcards.
WILDCARDS = "*>#+"


def is_pattern(topic: str) -> bool:
    """True if ``topic`` holds a wildcard character (a subscription pattern)."""
    return any(c in WILDCARDS for c in topic)


def validate_topic(topic: str, *, pattern: bool = False) -> str:
    """Topic names: non-empty, no whitespace, at most 249 characters, no wildcards
    (unless ``pattern``: a subscription may name a pattern on a broker with wildcards)."""
    if not isinstance(topic, str) or not topic:
        raise ConfigurationError("a topic name must be a non-empty string")
    if len(topic) > 249 or any(c.isspace() for c in topic) or (is_pattern(topic) and not pattern):
        raise ConfigurationError(
            f"invalid topic name {topic!r}: at most 249 characters, no whitespace or wildcards"
        )
    return topic


class Router:
    """Maps payload types and CloudEvents type names to topics."""

    def __init__(self, default_topic: str | None = None) -> None:
        self._by_class: dict[type, str] = {}
        self._by_name: dict[str, str] = {}
        self.default_topic = validate_topic(default_topic) if default_topic else None

    def add(self, payload_type: type | str, topic: str) -> None:
        """Route a payload type (or a type name) to ``topic``."""
        validate_topic(topic)
        if isinstance(payload_type, str):
            name = payload_type
        elif isinstance(payload_type, type):
            name = payload_info(payload_type).name
            self._by_class[payload_type] = topic
        else:
            raise ConfigurationError(f"cannot route {payload_type!r}: expected a class or a name")
        previous = self._by_name.get(name)
        if previous is not None and previous != topic:
            raise ConfigurationError(
                f"event type {name!r} is already routed to {previous!r}, not {topic!r}"
            )
        self._by_name[name] = topic

    def payload_types(self) -> list[type]:
        """The payload classes routed by class (not by type name), in the order added."""
        return list(self._by_class)

    def topic_for(self, payload: Any, event: Event) -> str:
        """The topic for ``payload`` (whose event is ``event``)."""
        topic = self._by_class.get(type(payload))
        if topic is None:
            topic = self._by_name.get(event.type)
        if topic is None:
            topic = self.default_topic
        if topic is None:
            raise UnroutableError(
                f"no topic for event type {event.type!r}: declare app.route(...) or pass topic=..."
            )
        return topic

    def has_route(self, payload_type: type) -> bool:
        """Whether payloads of ``payload_type`` have a topic (its own, by name, or the default)."""
        return (
            payload_type in self._by_class
            or payload_info(payload_type).name in self._by_name
            or self.default_topic is not None
        )

    def routes(self) -> dict[str, str]:
        """Event type name -> topic."""
        return dict(self._by_name)
