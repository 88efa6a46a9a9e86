"""Access control by client address (docs/behaviour.md, "Access by client address").

`AccessList` is an Ingress's denylist-source-range and allowlist-source-range, as nginx's
`deny`/`allow` rules ingress-nginx writes for them: the deny list first, then the allow list
followed by `deny all`. `RealIp` is how the client address is taken from a header when the
proxy sits behind other proxies, as nginx's realip module with `real_ip_recursive on`.
Pure: addresses in, addresses out; CIDRs are parsed once, at translation or start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

# An address or CIDR as Go's net.ParseCIDR / net.ParseIP read them (ingress-nginx's
# ParseIPNets): Python's ip_network would also take netmasks and zone ids, which Go refuses.
_RANGE: Final = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?")


def parse_ranges(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs and bare addresses; ValueError names the first bad one, which
    refuses the whole list, as in ingress-nginx. Host bits are cleared (10.1.2.3/8 is 10/8)."""
    networks: dict[Network, None] = {}
    for part in text.split(","):
        spec = part.strip()
        try:
            if not _RANGE.fullmatch(spec):
                raise ValueError
            networks[ip_network(spec, strict=False)] = None
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP address or CIDR range") from None
    return tuple(networks)


@lru_cache(maxsize=4096)  # a few thousand clients come back again and again
def client_address(text: bytes) -> Address | None:
    """A client address, an IPv4-mapped IPv6 one as its IPv4 address (as nginx's access and
    realip modules compare them); None when it is not an address."""
    try:
        address = ip_address(text.decode("latin-1"))
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address, networks: tuple[Network, ...]) -> bool:
    # (an address and a network of the other IP version never match: no exception)
    return any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class AccessList:
    """Which client addresses one route serves; the others get 403."""

    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()  # empty: every address not denied

    def allows(self, client: bytes) -> bool:
        return self.verdict(client) is not False

    def verdict(self, client: bytes) -> bool | None:
        """nginx's access module for `client`: True when an allow rule matches, False when a
        deny rule does (or the allow list's closing `deny all`), None when none does (a deny
        list alone, without the client), which `satisfy any` tells apart."""
        address = client_address(client)
        if address is None:
            return False  # not an address (cannot be for a TCP peer): refuse, never guess
        if within(address, self.deny):
            return False
        return within(address, self.allow) if self.allow else None


# ingress-nginx's proxy-real-ip-cidr default: every IPv4 address, and no IPv6 one
DEFAULT_TRUSTED: Final = "0.0.0.0/0"
DEFAULT_HEADER: Final = "X-Forwarded-For"


@dataclass(frozen=True, slots=True)
class RealIp:
    """use-forwarded-headers: the client address is the last one in `header` that no trusted
    proxy added, read from the right while each hop is in `trusted` (nginx's realip module,
    `real_ip_recursive on`); a peer outside `trusted` is the client, whatever it sends."""

    header: bytes  # lower case
    trusted: tuple[Network, ...]

    def client(self, peer: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The client address of a request from `peer` with the raw `headers`."""
        if not self._trusted(peer):
            return peer  # (the common case without proxies in front: one lookup, cached)
        values = [value for name, value in headers if name.lower() == self.header]
        if not values:
            return peer
        # X-Forwarded-For may come as several headers, read as one list (nginx does so); any
        # other header counts once, its first copy (nginx's realip takes the first).
        text = b",".join(values) if self.header == b"x-forwarded-for" else values[0]
        client = peer
        for entry in reversed(text.split(b",")):
            hop = entry.strip()
            if not hop:
                continue  # nginx steps over empty list elements ("a,, b", "a, ")
            address = _hop(hop)
            if address is None:
                break  # nginx stops at what it cannot read and keeps the last good address
            client = address
            if not self._trusted(client):
                break
        return client

    def _trusted(self, address: bytes) -> bool:
        parsed = client_address(address)
        return parsed is not None and within(parsed, self.trusted)


def _hop(text: bytes) -> bytes | None:
    """One forwarded-for entry as an address (an optional port dropped, as nginx's
    ngx_parse_addr_port allows: 1.2.3.4:80, [2001:db8::1]:80); None when it is none."""
    if text.startswith(b"["):
        text = text[1 : text.find(b"]")] if b"]" in text else b""
    elif text.count(b":") == 1:
        text = text.partition(b":")[0]
    address = client_address(text)
    return None if address is None else str(address).encode()
