"""The parts of a RabbitMQ URL that its two adapters read alike (no client library).

``amqp[s]://`` (:mod:`tidings.brokers.rabbitmq`) and ``stomp://``
(:mod:`tidings.brokers.stomp`) address the same server: credentials in the
authority (``guest``/``guest`` when absent), the vhost as the percent-encoded
path (``%2F`` is ``/``, the default), options in the query. Each adapter keeps
its own options, defaults and validation; errors name its scheme and show the
URL redacted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["RabbitUrl", "flag", "option_errors"]


@dataclass(frozen=True, slots=True)
class RabbitUrl:
    """A split URL: where, who, which vhost, and the options (the last value of each)."""

    scheme: str
    host: str
    """The host, ``127.0.0.1`` when absent."""
    port: int | None
    vhost: str
    username: str
    password: str = field(repr=False)
    query: Mapping[str, str]
    redacted: str
    """The URL as given, redacted (for messages)."""

    @classmethod
    def split(
        cls, url: str, kind: str, schemes: tuple[str, ...], known: frozenset[str]
    ) -> RabbitUrl:
        """Split ``url``, a ``kind`` URL whose scheme is one of ``schemes`` and whose
        options are among ``known``; else :class:`~tidings.errors.ConfigurationError`."""
        redacted = redact_url(url)
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad {kind} URL {redacted!r}: {exc}") from None
        if scheme not in schemes:
            article = "an" if kind[0] in "aeiou" else "a"
            raise ConfigurationError(f"not {article} {kind}:// URL: {redacted!r}")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - known
        if unknown:
            raise ConfigurationError(
                f"unknown {kind} URL option(s) {', '.join(sorted(unknown))} in {redacted!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(
            scheme=scheme,
            host=host or "127.0.0.1",
            port=port,
            vhost=unquote(path) or "/",
            username=unquote(parts.username) if parts.username else "guest",
            password=unquote(parts.password) if parts.password is not None else "guest",
            query=query,
            redacted=redacted,
        )


@contextmanager
def option_errors(kind: str, redacted: str) -> Iterator[None]:
    """Turn a ``ValueError`` from reading an option (``float("soon")``) into a
    :class:`~tidings.errors.ConfigurationError` naming the URL, redacted."""
    try:
        yield
    except ConfigurationError:
        raise
    except ValueError as exc:
        raise ConfigurationError(f"bad {kind} URL option in {redacted!r}: {exc}") from None


def flag(name: str, value: str, url: str) -> bool:
    """The boolean option ``name`` written as ``value`` in ``url`` (redacted)."""
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false in {url!r}; got {value!r}")
