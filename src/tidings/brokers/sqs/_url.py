"""Settings of the SNS/SQS adapter, from an ``sns+sqs://`` or ``sqs://`` URL (typed, validated).

``sns+sqs://[key_id:secret@][host[:port]][?option=value&...]`` (or ``sqs://``).
A host names the endpoint (``http://host:port``; ``https`` with ``tls=true``),
e.g. a local emulator; without one, botocore finds the endpoint, region and
credentials the standard way (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance roles),
so ``sns+sqs://`` alone works. Every option is listed in :data:`_URL_OPTIONS`
and documented in ``docs/brokers/sqs.md``. The secret never appears in
``repr`` or in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from tidings.brokers import redact_url
from tidings.errors import ConfigurationError

__all__ = ["SqsOptions"]

_URL_OPTIONS = frozenset(
    (
        "region",
        "tls",
        "fifo",
        "binding",
        "connect_timeout",
        "publish_timeout",
        "wait",
        "receivers",
        "max_receives",
    )
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(value: str, name: str, url: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false in {url!r}; got {value!r}")


@dataclass(frozen=True, slots=True)
class SqsOptions:
    """What :class:`~tidings.brokers.sqs.SqsBroker` takes; validated on creation.

    ``fanout``: True for ``sns+sqs://`` (topics are SNS topics, groups SQS queues
    subscribed to them), False for ``sqs://`` (a topic is one SQS queue, every
    consumer competes on it). ``fifo``: FIFO topics and queues, ordered per key
    (``MessageGroupId``) and deduplicated by event id (False). ``region``: used
    when botocore finds none (``us-east-1``). ``binding``: ``binary`` (CloudEvents
    attributes as message attributes) or ``structured`` (JSON bodies).
    ``connect_timeout`` (5) and ``publish_timeout`` (10): seconds. ``wait``: the
    long-poll seconds of a receive, 0-20 (10). ``receivers``: receives in flight
    per queue and member (4). ``max_receives``: the redrive policy's
    ``maxReceiveCount``, after which SQS moves a message to ``<topic>-dlq`` (25).
    """

    fanout: bool = True
    endpoint: str | None = None
    url: str = ""
    """The URL as given, redacted (for messages)."""
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    fifo: bool = False
    binding: str = "binary"
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    wait: int = 10
    receivers: int = 4
    max_receives: int = 25

    def __post_init__(self) -> None:
        for option in ("connect_timeout", "publish_timeout"):
            if getattr(self, option) <= 0:
                raise ConfigurationError(f"{option} must be > 0 in {self.url!r}")
        if not 0 <= self.wait <= 20:
            raise ConfigurationError(f"wait must be between 0 and 20 seconds in {self.url!r}")
        if not 1 <= self.receivers <= 64:
            raise ConfigurationError(f"receivers must be between 1 and 64 in {self.url!r}")
        if not 1 <= self.max_receives <= 1000:
            raise ConfigurationError(f"max_receives must be between 1 and 1000 in {self.url!r}")
        if self.binding not in ("binary", "structured"):
            raise ConfigurationError(
                f"binding must be 'binary' or 'structured' in {self.url!r}; got {self.binding!r}"
            )
        if (self.access_key is None) != (self.secret_key is None):
            raise ConfigurationError(
                f"give both the access key id and the secret (key_id:secret@) in {self.url!r}"
            )

    @classmethod
    def from_url(cls, url: str) -> SqsOptions:
        redacted = redact_url(url)
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad SNS/SQS URL {redacted!r}: {exc}") from None
        if scheme not in ("sqs", "sns+sqs"):
            raise ConfigurationError(f"not an sqs:// or sns+sqs:// URL: {redacted!r}")
        if parts.path not in ("", "/"):
            raise ConfigurationError(f"an SNS/SQS URL has no path: {redacted!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - _URL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown SNS/SQS URL option(s) {', '.join(sorted(unknown))} in {redacted!r}; "
                f"known: {', '.join(sorted(_URL_OPTIONS))}"
            )
        tls = _flag(query.get("tls", "false"), "tls", redacted)
        endpoint = None
        if host:
            where = f"[{host}]" if ":" in host else host
            endpoint = f"{'https' if tls else 'http'}://{where}" + (f":{port}" if port else "")
        try:
            return cls(
                fanout=scheme == "sns+sqs",
                endpoint=endpoint,
                url=redacted,
                region=query.get("region") or None,
                access_key=unquote(parts.username) if parts.username else None,
                secret_key=unquote(parts.password) if parts.password is not None else None,
                fifo=_flag(query.get("fifo", "false"), "fifo", redacted),
                binding=query.get("binding", "binary"),
                connect_timeout=float(query.get("connect_timeout", 5.0)),
                publish_timeout=float(query.get("publish_timeout", 10.0)),
                wait=int(query.get("wait", 10)),
                receivers=int(query.get("receivers", 4)),
                max_receives=int(query.get("max_receives", 25)),
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad SNS/SQS URL option in {redacted!r}: {exc}") from None
