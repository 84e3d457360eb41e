"""STOMP 1.2 over one TCP (or TLS) connection, on asyncio: framing, receipts, heart-beats.

A frame is ``COMMAND\\n``, ``name:value\\n`` headers (escaped: ``\\\\``, ``\\n``,
``\\r``, ``\\c``), an empty line, the body and a NUL. Bodies are read by
``content-length`` when the server sends it (RabbitMQ does), so they may hold
NUL bytes; every frame this client sends carries ``content-length`` too.

:class:`StompConnection` writes frames without waiting (the socket's buffer
orders them), matches ``RECEIPT`` frames to the futures :meth:`~StompConnection.send`
returns for frames that asked for one, and hands ``MESSAGE`` frames to a
callback per subscription id. Heart-beats go both ways: the client writes an
EOL when it wrote nothing for a period, and drops the connection when the
server stayed silent for twice its period, so a dead peer is noticed. An
``ERROR`` frame (RabbitMQ then closes the connection) fails every receipt still
awaited with its message. Frames written in one turn of the event loop go to the
socket together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Frame", "StompConnection", "StompError", "escape"]

#: Bytes of frames waiting for the end of the loop's turn after which they go at once.
_FLUSH_AT = 64 * 1024
_ESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\c": ":"}


class StompError(Exception):
    """The server sent ``ERROR``, or the connection closed before an answer came."""


class Frame:
    """A received frame: command, headers (the first of repeated ones), body."""

    __slots__ = ("body", "command", "headers")

    def __init__(self, command: str, headers: dict[str, str], body: bytes) -> None:
        self.command = command
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Frame {self.command} {self.headers!r} {len(self.body)} bytes>"


class _Waiter:
    """The receipts one ``send_many`` waits for: a count down to its future's result."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[None], remaining: int) -> None:
        self.future = future
        self.remaining = remaining

    def arrived(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def escape(text: str) -> str:
    if "\\" in text or ":" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
        text = text.replace(":", "\\c")
    return text


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def encode(command: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One frame, ready for the socket (``content-length`` added)."""
    lines = [command]
    if headers:
        # Names and values are joined by control characters, so that the whole block is
        # escaped in a few passes rather than header by header (unless they hold those).
        block = "\x01".join([f"{name}\x00{value}" for name, value in headers.items()])
        if block.count("\x00") != len(headers) or block.count("\x01") != len(headers) - 1:
            block = "\n".join(f"{escape(name)}:{escape(value)}" for name, value in headers.items())
        else:
            if "\\" in block:
                block = block.replace("\\", "\\\\")
            if "\r" in block or "\n" in block:
                block = block.replace("\r", "\\r").replace("\n", "\\n")
            block = block.replace(":", "\\c").replace("\x00", ":").replace("\x01", "\n")
        lines.append(block)
    lines.append(f"content-length:{len(body)}\n\n")
    return "\n".join(lines).encode() + body + b"\0"


class _Protocol(asyncio.Protocol):
    def __init__(self, connection: StompConnection) -> None:
        self.connection = connection
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.connection.heard = time.monotonic()
        buffer = self.buffer
        buffer += data
        start = 0
        size = len(buffer)
        while start < size:
            while start < size and buffer[start] in (10, 13):  # heart-beats
                start += 1
            end, gap = buffer.find(b"\n\n", start), 2
            crlf = buffer.find(b"\n\r\n", start)  # STOMP 1.2 allows CRLF line ends
            if crlf >= 0 and (end < 0 or crlf < end):
                end, gap = crlf, 3
            if end < 0:
                break
            head = buffer[start:end].decode("utf-8", "replace").split("\n")
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.rstrip("\r").partition(":")
                name = _unescape(name)
                if name not in headers:
                    headers[name] = _unescape(value)
            length = headers.get("content-length")
            body_start = end + gap
            if length is not None and length.isdigit():
                stop = body_start + int(length)
                if stop >= size:
                    break
            else:
                stop = buffer.find(b"\0", body_start)
                if stop < 0:
                    break
            frame = Frame(head[0].rstrip("\r"), headers, bytes(buffer[body_start:stop]))
            start = stop + 1
            self.connection.dispatch(frame)
        if start:
            del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.lost(exc)


class StompConnection:
    """A connected STOMP 1.2 session. Open with :meth:`open`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.server: dict[str, str] = {}
        self.heard = time.monotonic()
        self.closed = asyncio.Event()
        self.error: str | None = None
        #: Subscription id -> what receives its MESSAGE frames.
        self.handlers: dict[str, Callable[[Frame], None]] = {}
        #: Called once when the connection is gone (not after :meth:`close`).
        self.on_lost: Callable[[], None] | None = None
        #: Receipt id -> who waits for it (one waiter per send_many).
        self._receipts: dict[str, _Waiter] = {}
        self._connected: asyncio.Future[Frame] | None = None
        self._next = 0
        self._wrote = time.monotonic()
        #: Frames written in this turn of the event loop, sent together by ``_flush``.
        self._outgoing: list[bytes] = []
        self._outgoing_size = 0
        self._beats: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        login: str,
        passcode: str,
        vhost: str,
        heartbeat: float,
        timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> StompConnection:
        """Connect, send ``CONNECT`` and wait for ``CONNECTED`` (raises ``OSError``,
        ``TimeoutError`` or :class:`StompError`)."""
        self = cls()
        loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        beat = int(heartbeat * 1000)
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                lambda: _Protocol(self), host, port, ssl=tls
            )
            self.transport = transport
            headers = {
                "accept-version": "1.2",
                "host": vhost,
                "login": login,
                "passcode": passcode,
                "heart-beat": f"{beat},{beat}",
            }
            # CONNECT headers are not escaped (STOMP 1.2), so they are written as they are.
            lines = ["CONNECT", *(f"{k}:{v}" for k, v in headers.items())]
            transport.write(("\n".join(lines) + "\n\n").encode() + b"\0")
            try:
                connected = await self._connected
            except BaseException:
                transport.abort()
                raise
        self.server = connected.headers
        sends, wants = _beats(connected.headers.get("heart-beat", "0,0"))
        send_every = max(beat, wants) / 1000 if beat and wants else 0.0
        expect_every = max(beat, sends) / 1000 if beat and sends else 0.0
        if send_every or expect_every:
            self._beats = loop.create_task(
                self._heartbeat(send_every, expect_every), name="tidings-stomp-heartbeat"
            )
        return self

    @property
    def local_port(self) -> int:
        """The port of this end of the socket (the server's connection listings show it)."""
        sockname = self.transport.get_extra_info("sockname") if self.transport else None
        return int(sockname[1]) if sockname else 0

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    def new_id(self) -> str:
        self._next += 1
        return str(self._next)

    # -- writing ------------------------------------------------------------------

    def write(self, command: str, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Write a frame (raises :class:`StompError` once the connection is gone)."""
        if self.transport is None or self.closed.is_set():
            raise StompError(self.error or "the STOMP connection is closed")
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        frame = encode(command, headers, body)
        self._outgoing.append(frame)
        self._outgoing_size += len(frame)
        if self._outgoing_size >= _FLUSH_AT:
            self._flush()  # the server starts on a long burst while the rest is encoded

    def _flush(self) -> None:
        """Write the frames of this turn of the loop in one go (one system call for a
        burst of acks or sends, in the order they were written)."""
        outgoing, self._outgoing = self._outgoing, []
        self._outgoing_size = 0
        if outgoing and self.transport is not None and not self.closed.is_set():
            self.transport.write(b"".join(outgoing))
            self._wrote = time.monotonic()

    def send(
        self, command: str, headers: dict[str, str], body: bytes = b""
    ) -> asyncio.Future[None]:
        """Write a frame asking for a receipt; the future resolves when it arrives."""
        return self.send_many(command, [(headers, body)])

    def send_many(
        self, command: str, frames: Sequence[tuple[dict[str, str], bytes]]
    ) -> asyncio.Future[None]:
        """Write frames, each asking for a receipt; the future resolves once every receipt
        arrived (and fails if the connection goes first)."""
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(frames))
        try:
            for headers, body in frames:
                receipt = "r" + self.new_id()
                headers["receipt"] = receipt
                self.write(command, headers, body)
                self._receipts[receipt] = waiter
        except StompError as exc:
            waiter.fail(exc)
        self._flush()  # the caller waits for the receipts: nothing to gain from waiting
        if not frames:
            waiter.future.set_result(None)
        return waiter.future

    # -- reading ------------------------------------------------------------------

    def dispatch(self, frame: Frame) -> None:
        command = frame.command
        if command == "MESSAGE":
            handler = self.handlers.get(frame.headers.get("subscription", ""))
            if handler is not None:
                handler(frame)
        elif command == "RECEIPT":
            waiter = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
            if waiter is not None:
                waiter.arrived()
        elif command == "CONNECTED":
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(frame)
        elif command == "ERROR":
            detail = frame.body.decode("utf-8", "replace").strip()
            message = frame.headers.get("message", "error")
            self.error = f"{message}: {detail}" if detail else message
            # RabbitMQ closes the connection after an ERROR: it is gone from here on.
            if self.transport is not None:
                self.transport.close()
            self.lost(None)

    def _fail(self, error: Exception) -> None:
        receipts, self._receipts = self._receipts, {}
        for waiter in set(receipts.values()):
            waiter.fail(error)

    def lost(self, exc: Exception | None) -> None:
        if self.closed.is_set():
            return
        if self.error is None:
            self.error = f"the STOMP connection was lost ({exc!r})" if exc else "closed by peer"
        error = StompError(self.error)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        self._fail(error)
        self.closed.set()
        if self._beats is not None:
            self._beats.cancel()
        if self.on_lost is not None and not self._closing:
            self.on_lost()

    async def _heartbeat(self, send_every: float, expect_every: float) -> None:
        tick = min(x for x in (send_every, expect_every) if x) / 2
        while not self.closed.is_set():
            await asyncio.sleep(tick)
            now = time.monotonic()
            transport = self.transport
            if transport is None:
                return
            if send_every and now - self._wrote >= send_every * 0.8:
                transport.write(b"\n")
                self._wrote = now
            if expect_every and now - self.heard > expect_every * 2:
                self.error = f"the STOMP server was silent for {now - self.heard:.1f}s"
                transport.abort()
                return

    # -- closing ------------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """``DISCONNECT`` (waiting up to ``timeout`` for its receipt), then close the socket."""
        if self.closed.is_set() or self.transport is None:
            return
        self._closing = True
        with contextlib.suppress(StompError, TimeoutError, OSError):
            await asyncio.wait_for(self.send("DISCONNECT", {}), timeout)
        self.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        if not self.closed.is_set():
            self.transport.abort()
            self.lost(None)

    def abort(self) -> None:
        """Drop the connection at once (what a killed process does)."""
        if self.transport is not None:
            self._closing = True
            self.transport.abort()


def _beats(header: str) -> tuple[int, int]:
    sends, _, wants = header.partition(",")
    try:
        return int(sends or 0), int(wants or 0)
    except ValueError:
        return 0, 0
