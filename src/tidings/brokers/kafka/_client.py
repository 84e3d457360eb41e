"""aiokafka, imported in one place: the extra's hint, client settings, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from tidings.brokers.kafka._url import KafkaConfig
from tidings.errors import BrokerUnavailable, ConfigurationError

__all__ = ["aiokafka_module", "client_settings", "stop_consumer", "unavailable"]

_HINT = "the kafka:// broker needs aiokafka: pip install 'tidings[kafka]'"

# aiokafka logs connection failures itself; tidings raises them as typed errors, so
# without a logging setup they must not reach stderr through logging's last resort.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())
log = logging.getLogger("tidings.kafka")


def aiokafka_module() -> Any:
    try:
        import aiokafka
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(_HINT) from None
    return aiokafka


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments every aiokafka client of this config shares (bootstrap, security)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": max(int(config.connect_timeout * 1000), 1000),
        "retry_backoff_ms": 100,
    }
    if config.tls:
        try:
            context = ssl.create_default_context(cafile=config.ca_file)
            if config.cert_file is not None:
                context.load_cert_chain(config.cert_file, config.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"kafka URL {config.url}: TLS files unusable: {exc}") from None
        settings["ssl_context"] = context
    if config.user is not None:
        settings["sasl_mechanism"] = config.sasl_mechanism
        settings["sasl_plain_username"] = config.user
        settings["sasl_plain_password"] = config.password or ""
    return settings


def unavailable(config: KafkaConfig, exc: BaseException | None, what: str) -> BrokerUnavailable:
    """A :class:`BrokerUnavailable` naming the URL (password redacted) and the cause."""
    text = str(exc) if exc is not None else ""
    cause = f": {text or type(exc).__name__}" if exc is not None else ""
    return BrokerUnavailable(f"kafka broker {config.url} unreachable ({what}){cause}")


async def stop_consumer(consumer: Any, timeout: float, what: str) -> None:
    """Stop an aiokafka consumer; past ``timeout``, close its fetcher and connections anyway.

    ``stop()`` first waits for a rebalance in progress to end, and closes the
    consumer's connections only after that. A member stopped in the middle of a
    long rebalance (or against a dead broker) would otherwise leave its sockets
    open once the wait is given up.
    """
    try:
        await asyncio.wait_for(consumer.stop(), timeout)
        return
    except Exception as exc:
        log.warning("kafka: %s did not stop cleanly: %s", what, exc or type(exc).__name__)
    # aiokafka internals, each optional: the fetcher (which may reconnect), the
    # group coordination task, then every connection of the consumer's client.
    fetcher = getattr(consumer, "_fetcher", None)
    coordinator = getattr(consumer, "_coordinator", None)
    client = getattr(consumer, "_client", None)
    with contextlib.suppress(Exception):
        if fetcher is not None:
            await asyncio.wait_for(fetcher.close(), timeout)
    for name in ("_coordination_task", "_heartbeat_task", "_commit_refresh_task"):
        task = getattr(coordinator, name, None)
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout)
    with contextlib.suppress(Exception):
        if client is not None:
            await asyncio.wait_for(client.close(), timeout)
