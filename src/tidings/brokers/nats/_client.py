"""The nats-py client, with a faster parser for received headers.

nats-py parses every received header block in Python and checks each header
name character by character; profiling tidings' consumer showed that check
as a third of the time spent per message. This subclass keeps its rules
(lines split on CRLF and on the first ``:``; names ASCII without whitespace,
else dropped; values stripped, decoded as UTF-8 with replacement) and does
the whitespace check with one regular-expression search.
"""

from __future__ import annotations

import re

from nats.aio.client import Client

__all__ = ["FastHeaderClient"]

#: What ``str.isspace`` finds in an ASCII name (``\s`` plus the separators 0x1c-0x1f).
_SPACE = re.compile(rb"[\s\x1c-\x1f]")


class FastHeaderClient(Client):
    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip()
            if not name.isascii() or _SPACE.search(name):
                continue
            out[name.decode("ascii")] = value.strip().decode("utf-8", "replace")
        return out
