"""Standard Webhooks signatures: what a delivery carries, and checking it on the receiving side.

A delivery carries three headers (https://www.standardwebhooks.com):

``webhook-id``
    the message id (the event's id: the same on every attempt of one event);
``webhook-timestamp``
    Unix seconds when this attempt was signed;
``webhook-signature``
    ``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` keyed with the
    secret's bytes (the secret is ``whsec_`` + base64 of them); several
    signatures may be given, separated by spaces (while a secret is rotated).

The official ``standardwebhooks`` package checks these deliveries, and
:func:`verify` accepts what it signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from tidings.errors import ConfigurationError, TidingsError

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE",
    "WebhookVerificationError",
    "check_secret",
    "new_secret",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
#: Seconds a timestamp may be away from now, either way, before a delivery is refused.
TOLERANCE = 5 * 60
_SECRET_BYTES = 32


class WebhookVerificationError(TidingsError):
    """A delivery's signature headers are missing, malformed, out of date, or do not match."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def check_secret(secret: str) -> bytes:
    """The key bytes of ``secret`` (``whsec_<base64>``); ConfigurationError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigurationError(
            f"a webhook secret starts with {SECRET_PREFIX!r} followed by base64 "
            "(leave it out to have one made)"
        )
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"a webhook secret is {SECRET_PREFIX!r} followed by base64; the rest is not base64"
        ) from None
    if not 24 <= len(key) <= 64:
        raise ConfigurationError(
            f"a webhook secret holds 24 to 64 bytes (Standard Webhooks), this one {len(key)}"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body``: ``v1,<base64 HMAC-SHA256>``."""
    return f"v1,{_digest(check_secret(secret), message_id, timestamp, body)}"


def signed_headers(
    secret: str, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of a delivery of ``body`` (signed now by default)."""
    when = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(when),
        "webhook-signature": sign(secret, message_id, when, body),
    }


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check a delivery's signature; return its body parsed as JSON.

    ``headers`` are the request's (any case); ``payload`` is the raw body,
    exactly as received. Raises :class:`WebhookVerificationError` when a
    header is missing, the timestamp is more than ``tolerance`` seconds
    from ``now``, or no ``v1`` signature matches.

    >>> secret = new_secret()
    >>> body = b'{"specversion": "1.0"}'
    >>> verify(body, signed_headers(secret, "msg_1", body), secret)
    {'specversion': '1.0'}
    """
    body = payload.encode() if isinstance(payload, str) else payload
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("the delivery's timestamp is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("the delivery's timestamp is in the future")
    expected = _digest(check_secret(secret), message_id, timestamp, body).encode()
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise WebhookVerificationError(f"the signed body is not JSON: {exc}") from None
    raise WebhookVerificationError("no signature matches (wrong secret, or the body was changed)")


def _digest(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
