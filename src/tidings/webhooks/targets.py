"""Where a webhook may be sent: the SSRF guard.

A webhook's URL is chosen by whoever registers it, and the gateway sends
requests to it from inside your network. So a target whose address is
loopback, private, link-local (cloud metadata: ``169.254.169.254``),
unspecified, multicast or otherwise not globally routable is refused, for
IPv4 and IPv6 alike (an IPv6 address carrying an IPv4 one, mapped, 6to4 or
NAT64, is judged by that one too). Numeric host forms (``2130706433``,
``0x7f.1``) are names the resolver turns into addresses, checked as any.
A name is judged by every address it resolves to: one refused address
refuses the name.

The check runs when a webhook is registered and again before each delivery,
after resolving the name; the delivery then connects to the address that was
checked, so a name that resolves elsewhere a moment later (DNS rebinding)
gains nothing. ``allow_private=True`` (``tidings serve --allow-private-webhooks``)
turns the guard off, for a receiver on your own machine or network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from tidings.errors import ConfigurationError, TidingsError

__all__ = [
    "IPAddress",
    "Target",
    "TargetUnresolvedError",
    "UnsafeTargetError",
    "refusal",
    "resolve",
    "split_target",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTargetError(ConfigurationError):
    """A webhook target resolves to an address the SSRF guard refuses."""


class TargetUnresolvedError(TidingsError):
    """A webhook target's host name does not resolve (now)."""


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: scheme, host and port."""

    url: str
    scheme: str
    host: str
    port: int


def split_target(url: str) -> Target:
    """``url``'s parts; ConfigurationError unless it is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"webhook URL {url!r} is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"a webhook URL starts with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ConfigurationError(f"webhook URL {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("a webhook URL carries no user or password; use the secret")
    if parts.fragment:
        raise ConfigurationError(f"a webhook URL has no #fragment, got {url!r}")
    return Target(url, scheme, parts.hostname, port or (443 if scheme == "https" else 80))


def refusal(address: IPAddress) -> str | None:
    """Why the guard refuses ``address`` (``"loopback"``, ``"private"`` ...), or None.

    An IPv6 address carrying an IPv4 one (mapped, 6to4, NAT64) is judged by both.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            why = refusal(embedded)
            if why is not None:
                return why
        if address.ipv4_mapped is not None:
            return None
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "not globally routable"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target, *, allow_private: bool = False) -> list[IPAddress]:
    """The addresses of ``target``'s host, each one checked by the guard.

    Raises UnsafeTargetError naming the refused address (unless
    ``allow_private``), TargetUnresolvedError when the name does not resolve.
    """
    literal = _literal(target.host)
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            raise TargetUnresolvedError(f"{target.host!r} does not resolve: {exc}") from None
        found = []
        for family, *_, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
                if address not in found:
                    found.append(address)
        if not found:
            raise TargetUnresolvedError(f"{target.host!r} has no IPv4 or IPv6 address")
    if not allow_private:
        for address in found:
            why = refusal(address)
            if why is not None:
                named = "" if literal is not None else f" ({target.host} resolves to it)"
                raise UnsafeTargetError(
                    f"webhook target {address} is {why}{named}: refused to keep webhooks from "
                    "reaching inside the network; run the gateway with "
                    "--allow-private-webhooks to allow it"
                )
    return found
