"""The URL guard: which addresses the server may reach for a visitor (a stream or a video file by its URL).

A visitor's URL is fetched by the server, so without a guard a visitor reaches what the server can reach: its
loopback services, the private network, a cloud's metadata service at 169.254.169.254. `UrlGuard.check` allows
only the schemes of video streams and files, resolves the host (DNS names, and every spelling of an address:
"127.1", "0x7f.0.0.1", "2130706433", "[::ffff:127.0.0.1]" …) and refuses the URL unless every address it resolves
to is public, or inside a network the server's operator allowed (`--allow-networks`, for an intranet). An IPv6
address that carries an IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64) is judged by that IPv4 address too. Whoever
fetches must check every URL the fetch leads to the same way: each redirect, each playlist entry and segment.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from vidchat.errors import UrlRefusedError

SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "rtmps")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are an IPv4 address

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) → addresses, as socket.getaddrinfo gives them; tests pass their own
Resolver = Callable[[str, int | None], Sequence[str]]


def system_resolver(host: str, port: int | None) -> list[str]:
    """The host's addresses by the system's resolver (numeric spellings of an address resolve without a query)."""
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise UrlRefusedError(f"The address '{host}' could not be looked up ({error}).") from None
    return [entry[4][0] for entry in found]


@dataclass(frozen=True)
class UrlGuard:
    allow_networks: tuple[Network, ...] = ()  # private networks the server may reach anyway (an intranet)
    resolve: Resolver = system_resolver

    @classmethod
    def allowing(cls, networks: Sequence[str], resolve: Resolver = system_resolver) -> UrlGuard:
        """A guard that also allows these networks ("10.1.0.0/16", "127.0.0.2/32"); ValueError for a bad one."""
        return cls(tuple(ipaddress.ip_network(network, strict=False) for network in networks), resolve)

    def check(self, url: str) -> list[Address]:
        """The addresses of `url`'s host, every one of them allowed; UrlRefusedError saying why otherwise."""
        shown = shown_url(url)
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise UrlRefusedError(f"'{shown}' is not a valid URL.") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise UrlRefusedError(
                f"'{shown}' is not a video stream or file address: vidchat opens {', '.join(SCHEMES)} URLs only."
            )
        host = unquote(parts.hostname or "")
        if not host:
            raise UrlRefusedError(f"'{shown}' has no host.")
        if "%" in host:  # an IPv6 literal with its zone ("fe80::1%eth0"): the address is what counts
            host = host.split("%", 1)[0]
        addresses = [_address(found) for found in self.resolve(host, port)]
        if not addresses:
            raise UrlRefusedError(f"The address '{host}' could not be looked up.")
        for address in addresses:
            if not self.allows(address):
                raise UrlRefusedError(
                    f"'{shown}' leads to {address}, a private, loopback or reserved address: the server does not "
                    "fetch those for a visitor."
                )
        return addresses

    def allows(self, address: Address) -> bool:
        """Whether the server may connect to `address`: inside an allowed network, or public (and so is any IPv4
        address it carries)."""
        if any(address in network for network in self.allow_networks if network.version == address.version):
            return True
        return all(_public(candidate) for candidate in _carried(address))


def shown_url(url: str) -> str:
    """A visitor's URL as a message quotes it: at most 200 characters."""
    return url if len(url) <= 200 else url[:200] + "…"


def _address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # a scoped IPv6 address ("fe80::1%eth0") without its zone


def _carried(address: Address) -> list[Address]:
    """The address, and the IPv4 addresses an IPv6 one carries."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: Address) -> bool:
    return address.is_global and not address.is_multicast
