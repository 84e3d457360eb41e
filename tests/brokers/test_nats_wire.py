"""The adapter's reading of the wire, against nats-py's own parsing (no server needed)."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from tidings.broker import Message
from tidings.brokers.nats._binding import (
    ack_info,
    from_wire,
    pull_status,
    read_headers,
    to_wire,
)
from tidings.brokers.nats._client import FastHeaderClient


def _block(*lines: bytes) -> bytes:
    return b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def _nats_py(block: bytes) -> tuple[dict[str, str], str | None]:
    """What the Msg path gives: nats-py's header parsing, then from_wire."""
    parsed = asyncio.run(Client()._process_headers(block))
    return from_wire(parsed)


BLOCKS = [
    _block(
        b"ce-type: Tick",
        b"ce-id: 0190-abc",
        b"content-type: application/json",
        b"Nats-Msg-Id: 0190-abc",
        b"Tidings-Key: k1",
    ),
    _block(b"Tidings-Key: a%25b%20c", b"ce-source: /x"),
    _block(b"Tidings-Pct-%C3%BC: %C3%B6", b"ce-type: T"),
    _block(b"  spaced  :   value with  inner  spaces   ", b"ce-type:no-space"),
    _block(b"bad name: dropped", b"tab\tname: dropped", b"\xc3\xbcber: dropped"),
    _block(b"ce-data: \xff\xfe broken utf-8 \xe2\x82", b"ce-type: T"),
    _block(b"no colon here", b"ce-type: a: b", b": empty name"),
    _block(b"ce-type: first", b"ce-type: second", b"Tidings-Key: one", b"Tidings-Key: two"),
    _block(b"Nats-Expected-Stream: s", b"Nats-Time-Stamp: x", b"Other: kept"),
    _block(b"ce-type: \x0bvertical\x0c", b"ce-x: a\nb"),
    _block(),
]


@pytest.mark.parametrize("block", BLOCKS)
def test_read_headers_gives_what_nats_py_then_from_wire_gives(block: bytes) -> None:
    assert read_headers(block) == _nats_py(block)
    assert read_headers(block) == _nats_py(block)  # with the name caches warm


def test_read_headers_of_no_block() -> None:
    assert read_headers(None) == ({}, None)
    assert read_headers(b"") == ({}, None)


def test_read_headers_reads_what_to_wire_writes() -> None:
    message = Message(
        b"{}",
        {"ce-type": "T", "ü": "ö", "ce-x": " padded ", "ce-y": "line\nbreak"},
        key="k %1",
        id="0190",
    )
    headers = to_wire(message)
    assert headers is not None
    block = _block(*(f"{k}: {v}".encode() for k, v in headers.items()))
    own, key = read_headers(block)
    assert own == dict(message.headers)
    assert key == "k %1"


def test_the_fast_header_client_parses_as_nats_py() -> None:
    for block in BLOCKS:
        expected = asyncio.run(Client()._process_headers(block)) or {}
        assert FastHeaderClient._parse_header_lines(block[10:]) == expected


def test_pull_status() -> None:
    timeout = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 7\r\n\r\n"
    assert pull_status(timeout) == (408, 7)
    assert pull_status(b"NATS/1.0 404 No Messages\r\n\r\n") == (404, 0)
    assert pull_status(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n") is None
    assert pull_status(_block(b"ce-type: T")) is None
    assert pull_status(None) is None


def test_ack_info() -> None:
    assert ack_info(b"$JS.ACK.s.c.2.10.9.1700000000000000000.5") == (
        b"s",
        b"c",
        2,
        10,
        1.7e9,
        5,
    )
    with_domain = b"$JS.ACK.dom.hash.s.c.1.3.3.1700000000000000000.0.token"
    assert ack_info(with_domain) == (b"s", b"c", 1, 3, 1.7e9, 0)
    assert ack_info(b"_INBOX.abc.0") is None
    assert ack_info(b"") is None
    assert ack_info(b"$JS.ACK.s.c.x.10.9.1.5") is None


class _Recorder:
    """Stands in for the client: records what the parser hands on."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def _process_msg(self, *args: object) -> None:
        self.calls.append(("msg", *args))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_err(self, message: str) -> None:
        self.calls.append(("err", message))

    async def _process_info(self, info: object) -> None:
        self.calls.append(("info", info))


def _hmsg(subject: bytes, sid: int, reply: bytes, head: bytes, body: bytes) -> bytes:
    line = b" ".join([b"HMSG", subject, b"%d" % sid, *([reply] if reply else [])])
    return line + b" %d %d\r\n" % (len(head), len(head) + len(body)) + head + body + b"\r\n"


STREAM = (
    b'INFO {"server_id":"x"}\r\n'
    b"MSG a.b 1 5\r\nhello\r\n"
    + _hmsg(b"a.c", 2, b"$JS.ACK.s.c.1.2.3.4.0", b"NATS/1.0\r\nk: v\r\n\r\n", b"world")
    + b"PING\r\n"
    b"MSG a.d 3 reply.x 0\r\n\r\n"
    b"+OK\r\n"
    + _hmsg(b"_INBOX.x.0", 4, b"", b"NATS/1.0 408 Request Timeout\r\n\r\n", b"")
    + b"PONG\r\n"
    b"MSG a.e 1 3\r\na\r\n\r\n"
    b"-ERR 'Stale Connection'\r\n"
)


async def _parse(parser_class: type, chunks: list[bytes]) -> list[tuple[object, ...]]:
    from nats.protocol.parser import Parser

    recorder = _Recorder()
    parser: Parser = parser_class(recorder)
    for chunk in chunks:
        await parser.parse(chunk)
    return recorder.calls


def test_the_message_parser_reads_as_nats_py_whatever_the_reads() -> None:
    from nats.protocol.parser import Parser

    from tidings.brokers.nats._client import _MessageParser

    expected = asyncio.run(_parse(Parser, [STREAM]))
    assert [c[0] for c in expected] == [
        "info", "msg", "msg", "ping", "msg", "msg", "pong", "msg", "err",
    ]  # fmt: skip
    for cut in range(1, len(STREAM)):
        chunks = [STREAM[:cut], STREAM[cut:]]
        assert asyncio.run(_parse(_MessageParser, chunks)) == expected, cut
    bytewise = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert asyncio.run(_parse(_MessageParser, bytewise)) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"ce-type": "Tick", "ce-id": "0190-abc", "content-type": "application/json"},
        {" padded ": "  value  ", "": "skipped", "Nats-Msg-Id": "x"},
        {"multi": "line\r\nbreak\nhere", "uni": "ünï", "empty": ""},
    ],
)
def test_published_header_blocks_are_nats_pys(headers: dict[str, str]) -> None:
    """The client's own header encoding sends the bytes nats-py would."""

    async def command(client: Client) -> bytes:
        sent: list[bytes] = []

        async def capture(cmd: bytes, priority: bool = False) -> None:
            sent.append(bytes(cmd))

        client._send_command = capture  # type: ignore[method-assign]
        await client._send_publish("subj.1", "_INBOX.r", b"payload", 7, dict(headers))
        (one,) = sent
        return one

    assert asyncio.run(command(FastHeaderClient())) == asyncio.run(command(Client()))


def test_a_published_header_name_nats_py_refuses_is_refused() -> None:
    from nats.errors import BadHeaderError

    async def publish() -> None:
        client = FastHeaderClient()

        async def capture(cmd: bytes, priority: bool = False) -> None:
            pass

        client._send_command = capture  # type: ignore[method-assign]
        await client._send_publish("s", "", b"", 0, {"bad name": "v"})

    with pytest.raises(BadHeaderError):
        asyncio.run(publish())
