"""Names and resources: Pub/Sub topics, subscriptions and their policies.

Topic and subscription ids allow ``[A-Za-z0-9-_.~+%]``, 3 to 255 characters,
starting with a letter and not with ``goog``. A tidings topic keeps its name
(dots included: ``orders.dlq`` is the App's dead-letter topic of ``orders``);
any other character is percent-encoded (``a/b`` -> ``a%2Fb``), so distinct
names stay distinct. A name that cannot start a Pub/Sub id is refused.

* topic ``t``: the Pub/Sub topic ``t``, with the URL's ``retention``;
* group ``g`` of ``t``: the subscription ``t__g``, with message ordering (unless
  ``ordering=false``) and a dead-letter policy forwarding to the topic ``t.dlq``
  after ``max_deliveries`` attempts;
* a group-less reader: the subscription ``t__tail-<random>``, deleted when it
  closes (and by Pub/Sub after a day without readers, should its process die).

Subscription ids longer than 255 characters are cut and end in a CRC-32 of the
full name.
"""

from __future__ import annotations

import re
import zlib
from urllib.parse import quote

from tidings.errors import ConfigurationError

__all__ = ["dead_letter_topic", "subscription_id", "topic_id"]

_SAFE = "-_.~+"
_START = re.compile(r"[A-Za-z]")
_MAX = 255


def _encoded(name: str) -> str:
    return quote(name, safe=_SAFE)


def topic_id(topic: str) -> str:
    """The Pub/Sub topic id of a tidings topic."""
    mapped = _encoded(topic)
    if (
        len(mapped) < 3
        or len(mapped) > _MAX
        or not _START.match(mapped)
        or mapped.lower().startswith("goog")
    ):
        raise ConfigurationError(
            f"topic {topic!r} cannot name a Pub/Sub topic: 3 to 255 characters, starting with "
            "a letter and not with 'goog'"
        )
    return mapped


def dead_letter_topic(topic: str) -> str:
    """The topic Pub/Sub forwards ``topic``'s undeliverable messages to."""
    return topic_id(topic + ".dlq")


def subscription_id(topic: str, group: str) -> str:
    """The subscription of ``group`` on ``topic``."""
    if not group:
        raise ConfigurationError("a consumer group needs a name")
    name = f"{topic_id(topic)}__{_encoded(group)}"
    if len(name) <= _MAX:
        return name
    digest = f"-{zlib.crc32(name.encode()):08x}"
    return name[: _MAX - len(digest)] + digest
