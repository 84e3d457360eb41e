"""The three things this adapter needs from aiomqtt beyond its public API.

aiomqtt 2.x has no manual acknowledgement, which paho (under it) has: the
adapter switches it on in paho and sends each PUBACK itself when the delivery
is acked, so an unacked message stays unacked (the broker resends it only to
the same session). And a subscription waits on aiomqtt's message queue itself,
because ``Client.messages`` hides each wait in a task whose message a timeout
could lose. And paho leaves Nagle's algorithm on, which holds a small packet
(a PUBACK, the next publish) back until the peer's delayed ACK, up to 40 ms
on Linux, whenever an earlier one is unacknowledged. And a dropped connection
shows only in a future aiomqtt keeps to itself. All four reach into aiomqtt's
private attributes, here only.
"""

from __future__ import annotations

import asyncio
import socket

import aiomqtt

__all__ = ["disconnected", "dropped", "incoming", "manual_acks", "no_delay", "send_puback"]


def no_delay(client: aiomqtt.Client) -> None:
    """Switch Nagle's algorithm off on ``client``'s socket (call once connected)."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):  # TLS too (SSLSocket is one)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """Done once ``client``'s current connection ended (an exception if not asked to).

    aiomqtt replaces it on every connect: ask again after a reconnect.
    """
    future: asyncio.Future[None] = client._disconnected
    return future


def dropped(client: aiomqtt.Client) -> bool:
    """Whether ``client``'s connection ended; its error counts as seen (no asyncio
    "exception was never retrieved" when nobody awaited it)."""
    ended = disconnected(client)
    if not ended.done():
        return False
    if not ended.cancelled():
        ended.exception()
    return True
