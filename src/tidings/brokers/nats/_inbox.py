"""Native request/reply: replies travel on core NATS inbox subjects, not through JetStream.

The requesting App subscribes to one inbox subject of its connection; a
responder publishes the reply there (headers as on any message). Nothing is
stored: a reply sent while nobody listens is lost, and the caller times out.
Only inbox subjects are answered, so an event's ``replyto`` cannot make a
responder publish into a stream or any other subject.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from tidings.broker import Message
from tidings.brokers.nats._binding import from_wire, to_wire
from tidings.errors import PublishError

__all__ = ["INBOX_PREFIX", "open_inbox", "send_reply"]

INBOX_PREFIX = "_INBOX."


async def open_inbox(client: Client, deliver: Callable[[Message], None]) -> str:
    """Subscribe to a new inbox subject; each reply received goes to ``deliver``."""
    inbox = client.new_inbox()

    async def on_reply(msg: Msg) -> None:
        headers, key = from_wire(msg.headers)
        deliver(Message(msg.data, headers, key))

    await client.subscribe(inbox, cb=on_reply)
    return inbox


async def send_reply(client: Client, address: str, message: Message) -> None:
    """Publish ``message`` to the inbox ``address`` (core NATS: sent, not stored)."""
    if not address.startswith(INBOX_PREFIX) or any(c in address for c in " \t\r\n*>"):
        raise PublishError(f"replyto {address!r} is not a NATS inbox subject")
    await client.publish(address, message.value, headers=to_wire(message))
