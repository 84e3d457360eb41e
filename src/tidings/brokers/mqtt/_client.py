"""The two things this adapter needs from aiomqtt beyond its public API.

aiomqtt 2.x has no manual acknowledgement, which paho (under it) has: the
adapter switches it on in paho and sends each PUBACK itself when the delivery
is acked, so an unacked message stays unacked (the broker resends it only to
the same session). And a subscription waits on aiomqtt's message queue itself,
because ``Client.messages`` hides each wait in a task whose message a timeout
could lose. Both reach into aiomqtt's private attributes, here only.
"""

from __future__ import annotations

import asyncio

import aiomqtt

__all__ = ["incoming", "manual_acks", "send_puback"]


def manual_acks(client: aiomqtt.Client) -> None:
    """Make ``client`` leave PUBACKs to :func:`send_puback` (call before subscribing)."""
    client._client.manual_ack_set(True)


def send_puback(client: aiomqtt.Client, mid: int) -> None:
    """Acknowledge the QoS 1 message ``mid`` (queued; written by the client's loop)."""
    client._client.ack(mid, 1)


def incoming(client: aiomqtt.Client) -> asyncio.Queue[aiomqtt.Message]:
    """The queue aiomqtt puts received messages in."""
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    return queue
