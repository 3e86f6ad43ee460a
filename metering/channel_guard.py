"""Addresses an alert channel may never reach, whatever URL an admin types (SSRF care).

Link-local addresses (169.254.0.0/16, fe80::/10) hold the cloud providers' instance metadata
services (169.254.169.254: credentials of the machine's role); unspecified and multicast addresses
are never a receiver. They are refused for an IP literal when the channel is saved, and for a host
name when it is resolved, just before each connection (`GuardedResolver`), so a name that later
resolves there is refused too. Loopback and private addresses stay allowed: an internal receiver is
a common, legitimate target (restrict the gateway's egress to narrow it further).
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


def forbidden(address: str) -> bool:
    """True for an IP address no channel may reach; False for any other text (a name)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip.is_unspecified or ip.is_multicast


class GuardedResolver(AbstractResolver):
    """The default resolver, minus the addresses `forbidden` names; none left is a refusal."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = [r for r in await self._inner.resolve(host, port, family) if not forbidden(r["host"])]
        if not results:
            raise OSError(f"{host} resolves only to addresses alert channels may not reach (link-local)")
        return results

    async def close(self) -> None:
        await self._inner.close()
