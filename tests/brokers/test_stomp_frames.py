"""STOMP 1.2 framing of the stomp:// adapter, without a server: what is written parses back
to the same frame, however the bytes arrive."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.brokers.stomp._frames import Frame, StompConnection, _Protocol, encode

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def _parse(data: bytes, chunk: int) -> list[Frame]:
    connection = StompConnection()
    frames: list[Frame] = []
    connection.handlers["s"] = frames.append
    protocol = _Protocol(connection)
    for start in range(0, len(data), chunk):
        protocol.data_received(data[start : start + chunk])
    return frames


@given(
    headers=st.dictionaries(_text.filter(bool), _text, max_size=6),
    body=st.binary(max_size=64),
    chunk=st.integers(1, 64),
)
def test_a_frame_written_is_read_back_unchanged(
    headers: dict[str, str], body: bytes, chunk: int
) -> None:
    sent = {"subscription": "s", **{k: v for k, v in headers.items() if k != "subscription"}}
    data = b"\n" + encode("MESSAGE", sent, body) + b"\n\n" + encode("MESSAGE", sent, b"second")
    first, second = _parse(data, chunk)
    assert (first.command, first.body, second.body) == ("MESSAGE", body, b"second")
    assert {k: v for k, v in first.headers.items() if k != "content-length"} == sent
    assert first.headers["content-length"] == str(len(body))


def test_special_characters_are_escaped_as_stomp_1_2_says() -> None:
    frame = encode("SEND", {"a:b": "c\nd\\e\r", "time": "12:00"}, b"x")
    assert frame == b"SEND\na\\cb:c\\nd\\\\e\\r\ntime:12\\c00\ncontent-length:1\n\nx\0"
    assert encode("DISCONNECT", {}) == b"DISCONNECT\ncontent-length:0\n\n\0"


def test_a_frame_without_content_length_ends_at_its_nul_and_repeated_headers_keep_the_first() -> (
    None
):
    (frame,) = _parse(b"MESSAGE\nsubscription:s\nh:1\nh:2\r\n\r\nbody\0", 5)
    assert frame.headers == {"subscription": "s", "h": "1"}
    assert frame.body == b"body"
