"""The nats-py client, with a lighter path for the messages tidings reads and acks.

nats-py turns every received message into a ``Msg`` (its headers parsed into
a dict, name by name), queues it for the subscription's task and runs a
coroutine per message; every publish is a coroutine too. Profiling tidings'
consumer showed those steps, not JetStream, as most of the time per event.
This subclass adds, for the adapter's own use:

* :meth:`~FastHeaderClient.subscribe_raw`: a subscription whose messages go
  to a plain function, called from the reading task with the wire's bytes
  (subject, reply, payload, header block): no ``Msg``, queue or task. The
  function must not raise (an error is logged and the message dropped) and
  must bound what it keeps itself (pull requests bound it in the adapter).
* :meth:`~FastHeaderClient.publish_soon`: ``publish`` without a coroutine, for
  the ack protocol's small messages: the command joins nats-py's outbound
  buffer and the flusher task writes everything queued at once, as it does
  for ``publish`` (same order, same buffering during a reconnect, same errors);
  :meth:`~FastHeaderClient.write_pending` writes that buffer at once.
* a parser that reads messages (``MSG``, ``HMSG``) where they lie in the read
  buffer, cutting it once per read instead of twice per message and without
  nats-py's regular expressions; anything else (``PING``, ``INFO``, ``-ERR``,
  a malformed line) goes to nats-py's parser as before.
* a faster parser for received headers (the ``Msg`` path), keeping nats-py's
  rules: lines split on CRLF and on the first ``:``; names ASCII without
  whitespace, else dropped; values stripped, decoded as UTF-8 with
  replacement. The name check runs once per distinct name (names come from
  code and repeat).

These use nats-py internals (``_ps``, ``_process_msg``, ``_pending``,
``_flush_queue``), checked by the adapter's tests against the nats-py version
it installs.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from nats import errors
from nats.aio.client import _HEADER_KEY_RE, _HEADER_VALUE_NEWLINES, Client  # nats-py's rules
from nats.aio.subscription import Subscription
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

__all__ = ["FastHeaderClient", "RawHandler", "header_name"]

log = logging.getLogger("tidings.brokers.nats")

#: Called with (subject, reply, payload, header block or None) of each message.
RawHandler = Callable[[bytes, bytes, bytes, "bytes | None"], None]

#: What ``str.isspace`` finds in an ASCII name (``\s`` plus the separators 0x1c-0x1f).
_SPACE = re.compile(rb"[\s\x1c-\x1f]")


#: Header names seen so far: their text, or None for a name nats-py drops.
_NAMES: dict[bytes, str | None] = {}


def header_name(raw: bytes) -> str | None:
    """The header name nats-py keeps for the raw name ``raw`` (None: it drops it)."""
    if raw in _NAMES:
        return _NAMES[raw]
    name = raw.strip()
    text = name.decode("ascii") if name.isascii() and not _SPACE.search(name) else None
    if len(_NAMES) > 4096:  # names come from code, rarely from data: stay small
        _NAMES.clear()
    _NAMES[raw] = text
    return text


class _MessageParser(Parser):
    """nats-py's protocol parser, with a shorter path for messages."""

    async def parse(self, data: bytes = b"") -> None:
        if self.state != AWAITING_CONTROL_LINE:  # inside a message nats-py began
            await super().parse(data)
            return
        buf = self.buf
        buf.extend(data)
        process = self.nc._process_msg
        start = 0
        size = len(buf)
        try:
            while start < size:
                if buf.startswith(b"HMSG ", start):
                    headed = True
                elif buf.startswith(b"MSG ", start):
                    headed = False
                else:
                    break  # another operation: nats-py's parser below
                end = buf.find(b"\r\n", start)
                if end < 0:
                    return  # the rest of the line comes with the next read
                args = bytes(buf[start:end]).split()
                count = len(args) - headed
                if count != 4 and count != 5:
                    break  # malformed: nats-py's parser says so
                try:
                    sid = int(args[2])
                    total = int(args[-1])
                    head = int(args[-2]) if headed else 0
                except ValueError:
                    break
                body = end + 2
                after = body + total + 2
                if after > size:
                    return  # the message ends in a later read
                reply = args[3] if count == 5 else b""
                headers = bytes(buf[body : body + head]) if head > 0 else None
                payload = bytes(buf[body + head : body + total])
                start = after
                await process(sid, args[1], reply, payload, headers)
                if buf is not self.buf:
                    return  # reset meanwhile (a reconnect): this buffer is done with
        finally:
            del buf[:start]
        if buf:
            await super().parse()


#: Header names published so far: the name as sent ("" for one nats-py skips).
_PUBLISHED_NAMES: dict[str, str] = {}


def _published_name(name: str) -> str:
    key = name.strip()
    if key and not _HEADER_KEY_RE.fullmatch(key):
        raise errors.BadHeaderError(key)
    if len(_PUBLISHED_NAMES) > 4096:  # names come from code, rarely from data: stay small
        _PUBLISHED_NAMES.clear()
    _PUBLISHED_NAMES[name] = key
    return key


class FastHeaderClient(Client):
    def __init__(self) -> None:
        super().__init__()
        self._ps = _MessageParser(self)
        self._raw: dict[int, RawHandler] = {}

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                text = header_name(name)
                if text is not None:
                    out[text] = value.strip().decode("utf-8", "replace")
        return out

    # -- receiving without Msg objects ------------------------------------------------

    async def subscribe_raw(self, subject: str, handler: RawHandler) -> Subscription:
        """Subscribe to ``subject``; each message is passed to ``handler`` as bytes."""
        sub = await self.subscribe(subject)
        self._raw[sub._id] = handler
        return sub

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._raw.pop(sid, None)
        super()._remove_sub(sid, max_msgs)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> None:
        handler = self._raw.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:
            log.exception("nats: handling a message on %r failed", subject)

    # -- publishing with headers -------------------------------------------------------

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        """nats-py's header block, built in one string: each name checked once.

        Same bytes as nats-py (names stripped and checked against its pattern,
        empty ones skipped; values stripped, CR and LF turned into spaces).
        """
        if headers is None or not subject:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        lines = ["NATS/1.0\r\n"]
        names = _PUBLISHED_NAMES
        for name, value in headers.items():
            key = names.get(name)
            if key is None:
                key = _published_name(name)
            if not key:
                continue
            text = value.strip()
            if "\r" in text or "\n" in text:
                text = text.translate(_HEADER_VALUE_NEWLINES)
            lines.append(f"{key}: {text}\r\n")
        lines.append("\r\n")
        block = "".join(lines).encode()
        command = b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(),
            reply.encode(),
            len(block),
            len(block) + len(payload),
            block,
            payload,
        )
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(command)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    # -- publishing without a coroutine --------------------------------------------

    def publish_soon(self, subject: bytes, payload: bytes, reply: bytes = b"") -> None:
        """Queue a message (no headers) for the flusher task.

        ``subject`` and ``reply`` are not checked (subjects the server gave, or
        the adapter made from checked names).
        """
        if reply:
            command = b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload)
        else:
            command = b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)
        size = len(command)
        connected = self._status == Client.CONNECTED
        if not connected:
            if self.is_closed:
                raise errors.ConnectionClosedError
            if self.is_draining_pubs:
                raise errors.ConnectionDrainingError
            connected = self.is_connected  # draining its subscriptions
            if not connected and (
                self._max_pending_size <= 0
                or size + self._pending_data_size > self._max_pending_size
            ):
                raise errors.OutboundBufferLimitError
        self._pending.append(command)
        self._pending_data_size += size
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += len(payload)
        queue = self._flush_queue
        if connected and queue is not None and queue.empty():
            task = self._flusher_task
            if task is not None and not task.done():
                queue.put_nowait(asyncio.get_running_loop().create_future())
            elif self._transport is not None:  # no flusher (as nats-py then): write now
                self.write_pending()

    def write_pending(self) -> None:
        """Write the outbound buffer to the socket now, not at the flusher task's next turn.

        For a pull request that must leave before the caller goes on with work
        that does not yield to the event loop (a batch of handlings).
        """
        if self._pending and self._transport is not None and self.is_connected:
            self._transport.writelines(self._pending)
            self._pending = []
            self._pending_data_size = 0
