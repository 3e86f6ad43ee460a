"""Who is calling and which request this is: the client's address, and request ids.

Addresses: X-Forwarded-For is believed only from trusted proxies.

Anyone can send an X-Forwarded-For header. Reading its first hop would let a caller choose the
address recorded in the usage ledger and the audit log, and dodge the per-address login
throttle by sending a new one each time. So the header is read only when the direct peer is one
of `SOLARIS_TRUSTED_PROXIES`, and then from the right: the first hop that is not itself a
trusted proxy is the client (RFC 7239's advice for chains of proxies).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import secrets
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ADDRESS = 64

# This request's id, on the proxy's and the admin's requests alike: logged, echoed in
# `X-Request-ID`, and (on the proxy) the usage record's key.
REQUEST_ID = web.RequestKey("request_id", str)


def parse_networks(raw: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 192.168.1.7, ::1` -> networks; a bare address is a network of one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())


def _trusted(address: str, trusted: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str | None:
    peer = request.remote
    if not trusted or not peer or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop[:MAX_ADDRESS]
    return hops[0][:MAX_ADDRESS] if hops else peer  # every hop is a trusted proxy


# Request ids: "req_" + 32 hex digits, a random 64-bit prefix per process and a counter, unique
# without a system call per request (uuid4 reads the kernel's random source every time).
_prefix = secrets.token_hex(8)
_counter = itertools.count()


def new_request_id() -> str:
    return f"req_{_prefix}{next(_counter):016x}"


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix, _counter = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_new_prefix)  # forked workers must not repeat the parent's ids
