"""The outbound guard: webhook requests only go to public addresses.

A receiver URL names a host; we resolve it ourselves, refuse it if any address is not global
(private, loopback, link-local, shared, reserved, multicast...), and connect to the checked address
(keeping the name for `Host` and TLS), so a DNS answer that changes between the check and the
connection (rebinding) cannot steer us inside the network.

An IPv6 address that carries an IPv4 address a translator or tunnel would reach (IPv4-mapped,
IPv4-translated, IPv4-compatible, NAT64, 6to4, Teredo) is judged as that IPv4 address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL points somewhere a webhook must not go; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where to send: `url` names the checked address; `host` and `sni` keep the original name."""

    url: str
    host: str
    sni: str | None


# IPv6 prefixes whose last 32 bits are an IPv4 address that the network delivers to.
_EMBEDDING_LAST_32 = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped (RFC 4291)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 2765)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, RFC 4291)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
)
# NAT64 local-use prefix (RFC 8215): the IPv4 address may sit at several offsets, and the
# translator is private by definition; refused whatever it embeds.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translator or tunnel, if any."""
    for network in _EMBEDDING_LAST_32:
        if address in network:
            return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in _TEREDO and address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    return []


def is_public(address: IPAddress) -> bool:
    """Whether a webhook may go to `address`: global unicast, whatever IPv4 it embeds too."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        embedded = embedded_ipv4(address)
        if embedded:
            return all(is_public(v4) for v4 in embedded)
    return address.is_global and not address.is_multicast


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"{host} has no address")
    return addresses


async def check_target(url: str, *, allow_private: bool) -> Target:
    """The request target for `url`, its host resolved and checked (unless `allow_private`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http and https URLs with a host are allowed")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = ip_literal(host)
    addresses = [literal] if literal is not None else await resolve(host, port)
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(
                f"{host} resolves to a non-public address ({refused[0]}); "
                "set CARIOS_WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
    address = addresses[0]
    netloc = f"[{address}]" if address.version == 6 else str(address)
    if parts.port is not None:
        netloc += f":{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    sni = host if parts.scheme == "https" and literal is None else None
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host=host_header,
        sni=sni,
    )
