"""Names and resources: SNS topics, SQS queues, subscriptions and redrive policies.

SNS topic and SQS queue names allow ``[A-Za-z0-9_-]`` only (and ``.fifo`` at the
end of a FIFO one), so a tidings topic's dots become hyphens: ``orders.dlq``
(the App's dead-letter topic of ``orders``) is ``orders-dlq``, and ``a.b`` and
``a-b`` name the same topic. Other characters are refused.

* topic ``t``: the SNS topic ``t`` (``sns+sqs://``), or the SQS queue ``t`` (``sqs://``);
* group ``g`` of ``t`` (``sns+sqs://``): the SQS queue ``t__g``, subscribed to the
  topic with raw message delivery;
* every queue has a redrive policy to the SQS queue ``t-dlq``: a message received
  ``max_receives`` times without being deleted moves there;
* a group-less reader: a queue ``t__tail-<random>``, deleted when it closes.

Queue names longer than SQS's 80 characters are cut and end in a CRC-32 of the
full name. FIFO names end in ``.fifo``.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import TYPE_CHECKING

from tidings.errors import ConfigurationError

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

__all__ = [
    "dead_letter_queue",
    "group_queue",
    "point_queue",
    "queue_attributes",
    "queue_policy",
    "topic_name",
]

_VALID = re.compile(r"[A-Za-z0-9_-]+")
_QUEUE_MAX = 80
_TOPIC_MAX = 256
#: Two weeks: the longest SQS keeps a message.
RETENTION = 1209600


def _mapped(name: str, what: str) -> str:
    mapped = name.replace(".", "-")
    if not _VALID.fullmatch(mapped):
        raise ConfigurationError(
            f"{what} {name!r} cannot name an SNS topic or SQS queue: use letters, digits, "
            "'-', '_' and '.' (dots become hyphens)"
        )
    return mapped


def _fit(name: str, limit: int, fifo: bool) -> str:
    suffix = ".fifo" if fifo else ""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = f"-{zlib.crc32(name.encode()):08x}"
    return name[: limit - len(digest) - len(suffix)] + digest + suffix


def topic_name(topic: str, fifo: bool) -> str:
    """The SNS topic (or, on ``sqs://``, the SQS queue) of a tidings topic."""
    return _fit(_mapped(topic, "topic"), _TOPIC_MAX, fifo)


def point_queue(topic: str, fifo: bool) -> str:
    """The SQS queue of a tidings topic on ``sqs://``."""
    return _fit(_mapped(topic, "topic"), _QUEUE_MAX, fifo)


def group_queue(topic: str, group: str, fifo: bool) -> str:
    """The SQS queue of ``group`` on ``topic``."""
    return _fit(f"{_mapped(topic, 'topic')}__{_mapped(group, 'group')}", _QUEUE_MAX, fifo)


def dead_letter_queue(topic: str, fifo: bool) -> str:
    """The redrive target of every queue of ``topic``."""
    return _fit(f"{_mapped(topic, 'topic')}-dlq", _QUEUE_MAX, fifo)


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """A queue policy letting the SNS topic send to the queue (AWS needs it; moto ignores it)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
    )


def queue_attributes(
    fifo: bool, redrive_arn: str | None, max_receives: int
) -> dict[QueueAttributeNameType, str]:
    attributes: dict[QueueAttributeNameType, str] = {"MessageRetentionPeriod": str(RETENTION)}
    if fifo:
        attributes["FifoQueue"] = "true"
    if redrive_arn is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": redrive_arn, "maxReceiveCount": str(max_receives)}
        )
    return attributes
