"""One delivery: POST an event, signed, to the address the SSRF guard checked.

The body is the event as a structured CloudEvent (``application/cloudevents+json``).
A 2xx answer is a delivery; any other answer, a timeout or a connection
failure raises :class:`DeliveryFailedError`, which the subscription's retry
policy retries with backoff and dead-letters after the last attempt. A target
the guard refuses raises :class:`~tidings.webhooks.targets.UnsafeTargetError`,
a ConfigurationError: dead-lettered at once, as another attempt would fail
the same way. Redirects are not followed (they could lead anywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.codec import Codec
from tidings.errors import ConfigurationError, HandlerError
from tidings.event import Event
from tidings.webhooks.registry import Webhook
from tidings.webhooks.signature import signed_headers
from tidings.webhooks.targets import TargetUnresolvedError, resolve, split_target

if TYPE_CHECKING:
    import httpx

__all__ = ["CONTENT_TYPE", "DeliveryFailedError", "Sender"]

CONTENT_TYPE = "application/cloudevents+json"
_USER_AGENT = "tidings-webhooks"


class DeliveryFailedError(HandlerError):
    """The endpoint did not take the event: an answer other than 2xx, a timeout, no connection."""


class Sender:
    """Sends events to webhooks over one HTTP client; :meth:`close` it when done."""

    def __init__(self, *, timeout: float = 10.0, allow_private: bool = False) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise ConfigurationError(
                "webhook deliveries need httpx: pip install 'tidings[webhooks]'"
            ) from exc
        self._httpx = httpx
        self.allow_private = allow_private
        self._codec = Codec()
        self._client: httpx.AsyncClient = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
        )

    async def send(self, webhook: Webhook, event: Event) -> None:
        """POST ``event`` to ``webhook``; raise unless it answers 2xx."""
        httpx = self._httpx
        target = split_target(webhook.url)
        try:
            addresses = await resolve(target, allow_private=self.allow_private)
        except TargetUnresolvedError as exc:
            raise DeliveryFailedError(str(exc)) from None
        body = self._codec.encode_structured(event)
        headers = signed_headers(webhook.secret, event.id, body)
        headers |= {"content-type": CONTENT_TYPE, "user-agent": _USER_AGENT}
        url = httpx.URL(webhook.url)
        headers["host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        # Connect to an address just checked, not to what the name resolves to next;
        # the next one when it refuses the connection (localhost: ::1, then 127.0.0.1).
        for index, address in enumerate(addresses):
            try:
                answer = await self._client.post(
                    url.copy_with(host=str(address)),
                    content=body,
                    headers=headers,
                    extensions=extensions,
                )
                break
            except httpx.ConnectError as exc:
                if index == len(addresses) - 1:
                    raise DeliveryFailedError(
                        f"{webhook.url} could not be reached: {exc!r}"
                    ) from None
            except httpx.TimeoutException as exc:
                raise DeliveryFailedError(
                    f"{webhook.url} did not answer in time ({exc!r})"
                ) from None
            except httpx.HTTPError as exc:
                raise DeliveryFailedError(f"{webhook.url} could not be reached: {exc!r}") from None
        if not answer.is_success:
            raise DeliveryFailedError(
                f"{webhook.url} answered {answer.status_code} {answer.reason_phrase}"
            )

    async def close(self) -> None:
        await self._client.aclose()
