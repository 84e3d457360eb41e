"""Member ids an operator can read: which app, on which host, in which process."""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["member_id"]


def member_id(client_name: str | None = None) -> str:
    """``<client_name>@<host>:<pid>-<random>``, or ``<host>:<pid>-<random>`` without a name.

    The random part keeps two members of one process apart, and a restarted
    process that got the same pid apart from the rows its predecessor left.
    """
    where = f"{socket.gethostname() or 'localhost'}:{os.getpid()}-{secrets.token_hex(4)}"
    return f"{client_name}@{where}" if client_name else where
