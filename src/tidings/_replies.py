"""The answering side of request/reply: where a reply goes, and what a failure answers.

A request is an event with the ``replyto`` extension: an address the
requester listens on (a reply topic, or a broker's native inbox). A handler
answers by returning a value or calling ``ctx.reply``; the reply is an event
derived from the request (``causationid`` = the request id), sent to that
address. A request whose handler fails for good is answered with an event of
type :data:`REPLY_FAILED_TYPE`, so the caller is not left waiting.
"""

from __future__ import annotations

import logging
from typing import Any

from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.payload import payload_info
from tidings.routing import validate_topic

__all__ = [
    "REPLYTO",
    "REPLY_FAILED_TYPE",
    "failure_reply",
    "has_type",
    "is_request",
    "reply_address",
]

log = logging.getLogger("tidings.requests")

#: The CloudEvents extension naming where a request's reply goes.
REPLYTO = "replyto"
#: Values that carry no event type of their own.
_PLAIN = (dict, list, tuple, str, int, float, bool, type(None))
#: The type of the reply sent when a request's handler failed for good.
REPLY_FAILED_TYPE = "tidings.reply.failed"


def is_request(event: Event) -> bool:
    """Whether ``event`` asks for a reply (cheap: most events carry no extension)."""
    extensions = event.extensions
    return bool(extensions) and REPLYTO in extensions


def reply_address(event: Event, native: bool) -> str | None:
    """Where ``event``'s reply goes, or None if it asks for none (or names no usable topic)."""
    extensions = event.extensions
    if not extensions:
        return None
    address = extensions.get(REPLYTO)
    if address is None:
        return None
    if not isinstance(address, str) or not address:
        log.warning("event %s: replyto %r is not an address; no reply sent", event.id, address)
        return None
    if not native:
        try:
            validate_topic(address)
        except ConfigurationError as exc:
            log.warning("event %s: no reply sent: %s", event.id, exc)
            return None
    return address


def has_type(payload: Any) -> bool:
    """Whether ``payload`` names its event type (an Event, a model, a dataclass...)."""
    if isinstance(payload, Event):
        return True
    if isinstance(payload, _PLAIN):
        return False
    try:
        payload_info(payload)
    except (ConfigurationError, TypeError, ValueError):
        return False
    return True


def failure_reply(request: Event, error: BaseException, source: str) -> Event:
    """The reply telling a requester that its request failed, and why."""
    data: dict[str, Any] = {"error_type": type(error).__name__, "error": str(error)}
    return request.derive(data, type=REPLY_FAILED_TYPE, source=source)
