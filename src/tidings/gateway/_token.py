"""The gateway's bearer token when none is given: made once, kept beside the broker.

For the embedded broker (``sqlite:///path/tidings.db``) the token file is
``path/tidings.db.token``; for any other broker it is
``$XDG_STATE_HOME/tidings/gateway.token`` (``~/.local/state/tidings/`` when
``XDG_STATE_HOME`` is not set). The file is created with mode 0600 and holds
the token on one line; delete it to have a new one made on the next start.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tidings.errors import ConfigurationError

__all__ = ["StoredToken", "stored_token", "token_path"]


@dataclass(frozen=True)
class StoredToken:
    value: str = field(repr=False)
    path: Path
    created: bool
    """True when this call made the token (the first start): show it once."""


def token_path(broker_url: str) -> Path:
    """Where the token of the gateway serving ``broker_url`` is kept."""
    parts = urlsplit(broker_url)
    if parts.scheme.lower() == "sqlite":
        database = unquote(parts.path)[1:]  # sqlite:///relative.db, sqlite:////absolute.db
        if database:
            return Path(database + ".token")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tidings" / "gateway.token"


def stored_token(broker_url: str) -> StoredToken:
    """The token kept for ``broker_url``, made (``secrets.token_urlsafe``) if there is none.

    Raises ConfigurationError when the file cannot be read or written, or is empty.
    """
    path = token_path(broker_url)
    try:
        return StoredToken(_read(path), path, created=False)
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another gateway made it just now: use that one
        return StoredToken(_read(path), path, created=False)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot store the gateway token at {path}: {exc.strerror}; "
            "set TIDINGS_TOKEN (or pass --token) instead"
        ) from exc
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(token + "\n")
    return StoredToken(token, path, created=True)


def _read(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the gateway token at {path}: {exc}") from exc
    if not token:
        raise ConfigurationError(f"the gateway token file {path} is empty: delete it or fill it")
    return token
