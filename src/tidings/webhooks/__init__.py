"""Signed webhooks: events of a topic POSTed to HTTP endpoints, Standard Webhooks style.

Register an endpoint (``tidings webhooks add``, ``POST /webhooks`` on the
gateway, or :func:`register`); a running ``tidings serve`` on the same broker
delivers each matching event as a structured CloudEvent, signed
(:mod:`~tidings.webhooks.signature`), retried with backoff, dead-lettered
after the last attempt; the endpoint is paused after a run of failed events
(:mod:`~tidings.webhooks.dispatcher`). Targets inside the network are refused
(:mod:`~tidings.webhooks.targets`). On the receiving side, :func:`verify`
checks a delivery::

    event = tidings.webhooks.verify(body, request.headers, secret)

Only :mod:`~tidings.webhooks.sender` needs an optional package (httpx,
``tidings[webhooks]``), imported when a :class:`Sender` is made.
"""

from __future__ import annotations

from tidings.webhooks.registry import (
    GROUP_PREFIX,
    MemoryWebhookStore,
    Webhook,
    WebhookStorage,
    WebhookStore,
    new_webhook,
    register,
)
from tidings.webhooks.signature import (
    WebhookVerificationError,
    new_secret,
    sign,
    signed_headers,
    verify,
)
from tidings.webhooks.targets import TargetUnresolvedError, UnsafeTargetError

__all__ = [
    "GROUP_PREFIX",
    "MemoryWebhookStore",
    "TargetUnresolvedError",
    "UnsafeTargetError",
    "Webhook",
    "WebhookStorage",
    "WebhookStore",
    "WebhookVerificationError",
    "new_secret",
    "new_webhook",
    "register",
    "sign",
    "signed_headers",
    "verify",
]
